using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace TcpFork;

/// <summary>
/// The server's certificate chain and key, and the client CAs, parsed once: by the parent from the
/// files (at start, and on SIGHUP), or by a spawned child from the bytes the parent handed it (it never
/// opens the files itself: they may be root's, and it runs as <see cref="TcpForkServerOptions.User"/>).
/// A forked child inherits the parent's object as it was at the fork, parsed and ready: for tcpfork's
/// own services (<see cref="TlsEngine.OpenSsl"/>) an OpenSSL context, for a library handler's
/// <see cref="SslStream"/> (<see cref="TlsEngine.SslStream"/>) a certificate context.
/// </summary>
internal sealed class TlsCredentials : IDisposable
{
    private TlsCredentials(TlsOptions options, byte[] certificatePem, byte[] keyPem, byte[]? caPem, TlsEngine engine, ReadOnlySpan<byte> ticketKey, bool fromFiles)
    {
        CertificatePem = certificatePem;
        KeyPem = keyPem;
        CaPem = caPem;
        // .NET parses the files the parent reads (its errors name what is wrong) and whatever SslStream
        // will use; a spawned child of tcpfork's own services needs only the OpenSSL context.
        if (fromFiles || engine == TlsEngine.SslStream)
        {
            ParseForDotNet(engine == TlsEngine.SslStream);
        }
        if (engine == TlsEngine.OpenSsl)
        {
            Native = OpenSslContext.Create(options, certificatePem, keyPem, caPem, ticketKey);
        }
    }

    private void ParseForDotNet(bool withContext)
    {
        var chain = new X509Certificate2Collection();
        try
        {
            chain.ImportFromPem(Encoding.ASCII.GetString(CertificatePem));
        }
        catch (CryptographicException)
        {
            throw new TlsFileException(TlsFile.Certificate, "is not a PEM certificate");
        }
        if (chain.Count == 0)
        {
            throw new TlsFileException(TlsFile.Certificate, "holds no PEM certificate");
        }
        X509Certificate2 leaf;
        try
        {
            leaf = X509Certificate2.CreateFromPem(Encoding.ASCII.GetString(CertificatePem), Encoding.ASCII.GetString(KeyPem));
        }
        catch (Exception e) when (e is CryptographicException or ArgumentException)
        {
            throw new TlsFileException(TlsFile.Key, "holds no unencrypted PEM private key (PKCS#8, RSA or EC) matching the certificate");
        }
        Certificate = leaf;
        if (withContext)
        {
            // offline: no AIA or OCSP fetch, which would start threads (and a fork needs a one-thread parent).
            Context = SslStreamCertificateContext.Create(leaf, [.. chain.Skip(1)], offline: true);
        }
        if (CaPem is not null)
        {
            var cas = new X509Certificate2Collection();
            try
            {
                cas.ImportFromPem(Encoding.ASCII.GetString(CaPem));
            }
            catch (CryptographicException)
            {
                throw new TlsFileException(TlsFile.ClientCa, "is not PEM certificates");
            }
            if (cas.Count == 0)
            {
                throw new TlsFileException(TlsFile.ClientCa, "holds no PEM certificate");
            }
            ClientCas = cas;
        }
    }

    public byte[] CertificatePem { get; }

    public byte[] KeyPem { get; }

    public byte[]? CaPem { get; }

    /// <summary>The server's certificate, with its private key; null in a spawned child of tcpfork's own services (never parsed there).</summary>
    public X509Certificate2? Certificate { get; private set; }

    /// <summary>For <see cref="TlsEngine.SslStream"/>: the chain and key, with the SSL_CTX .NET makes for them; else null.</summary>
    public SslStreamCertificateContext? Context { get; private set; }

    /// <summary>For <see cref="TlsEngine.OpenSsl"/>: the SSL_CTX every session of tcpfork's own services is made from; else null.</summary>
    public OpenSslContext? Native { get; }

    /// <summary>The client certificates' trust anchors, with <see cref="TlsOptions.ClientCaFile"/>.</summary>
    public X509Certificate2Collection? ClientCas { get; private set; }

    /// <summary>
    /// Reads and parses the files of <paramref name="options"/>; throws <see cref="TlsFileException"/>
    /// (an <see cref="ArgumentException"/>) naming the option and the file when one is missing,
    /// unreadable or not what it should hold.
    /// </summary>
    public static TlsCredentials Read(TlsOptions options, TlsEngine engine, ReadOnlySpan<byte> ticketKey)
    {
        byte[] cert = ReadFile(options.CertificateFile, TlsFile.Certificate);
        byte[] key = ReadFile(options.KeyFile, TlsFile.Key);
        byte[]? ca = options.ClientCaFile is null ? null : ReadFile(options.ClientCaFile, TlsFile.ClientCa);
        try
        {
            return new TlsCredentials(options, cert, key, ca, engine, ticketKey, fromFiles: true);
        }
        catch (TlsFileException e)
        {
            throw e.For(e.File switch { TlsFile.Certificate => options.CertificateFile, TlsFile.Key => options.KeyFile, _ => options.ClientCaFile! });
        }
    }

    /// <summary>
    /// Parses bytes handed over by the parent (<see cref="TlsServer.ReadHandOff"/>).
    /// </summary>
    public static TlsCredentials FromPem(TlsOptions options, byte[] certificatePem, byte[] keyPem, byte[]? caPem, TlsEngine engine, ReadOnlySpan<byte> ticketKey) =>
        new(options, certificatePem, keyPem, caPem, engine, ticketKey, fromFiles: false);

    private static byte[] ReadFile(string path, TlsFile file)
    {
        try
        {
            return File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            string why = e switch
            {
                FileNotFoundException or DirectoryNotFoundException => "no such file",
                UnauthorizedAccessException => "permission denied",
                _ => SystemCallException.Describe(e.HResult),
            };
            throw new TlsFileException(file, why).For(path);
        }
    }

    /// <summary>Frees the OpenSSL context (the parent's finalizer thread is parked: nothing is freed unless said).</summary>
    public void Dispose() => Native?.Dispose();

    /// <summary>For the log: when the certificate expires, RFC 3339 UTC.</summary>
    public string Expires => Certificate is null ? "-" : Certificate.NotAfter.ToUniversalTime().ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture);
}

/// <summary>Who runs a child's TLS sessions.</summary>
internal enum TlsEngine
{
    /// <summary>A library handler: <see cref="SslStream"/>, the type a .NET handler expects (asynchronous, full duplex).</summary>
    SslStream,

    /// <summary>tcpfork's own services (echo, the relay to an exec'd program): OpenSSL on the descriptor, <see cref="OpenSslSession"/>.</summary>
    OpenSsl,
}

/// <summary>Which of the TLS files a <see cref="TlsFileException"/> is about.</summary>
internal enum TlsFile
{
    Certificate,
    Key,
    ClientCa,
}

/// <summary>
/// A TLS file that is missing, unreadable or not what it should hold. Its message names the option
/// (<c>TcpForkServerOptions.Tls.CertificateFile</c>, which the CLI shows as <c>--tls-cert</c>), the file
/// and the reason; <see cref="Plain"/> says the same with the file alone, for the reload warning.
/// </summary>
#pragma warning disable CA1032 // Only made here, always with its parts.
internal sealed class TlsFileException(TlsFile file, string reason, string? path = null)
#pragma warning restore CA1032
    : ArgumentException($"TcpForkServerOptions.Tls.{file switch { TlsFile.Certificate => "CertificateFile", TlsFile.Key => "KeyFile", _ => "ClientCaFile" }} '{path}': {reason}")
{
    public TlsFile File { get; } = file;

    public string Plain { get; } = $"{file switch { TlsFile.Certificate => "certificate", TlsFile.Key => "key", _ => "client CA" }} file '{path}': {reason}";

    /// <summary>The same failure, naming <paramref name="filePath"/>.</summary>
    public TlsFileException For(string filePath) => new(File, reason, filePath);
}
