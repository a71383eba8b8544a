using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace TcpFork.Tests;

/// <summary>
/// Certificates made by the openssl command for the TLS tests, in a directory of their own: a CA, a
/// server certificate for localhost and 127.0.0.1, a second server certificate (for rotation), and
/// client certificates: alice (valid), old (expired) and mallory (issued by another CA).
/// </summary>
public sealed class TlsFiles : IDisposable
{
    public TlsFiles()
    {
        Directory.CreateDirectory(Dir);
        File.WriteAllText(Path.Combine(Dir, "server.ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
        File.WriteAllText(Path.Combine(Dir, "client.ext"), "extendedKeyUsage=clientAuth\n");
        SelfSigned("ca", "tcpfork test CA");
        SelfSigned("otherca", "another CA");
        Issue("server", "localhost", "ca", "server.ext", 30);
        Issue("server2", "rotated.localhost", "ca", "server.ext", 30);
        Issue("alice", "alice", "ca", "client.ext", 30);
        Issue("old", "old", "ca", "client.ext", -1); // notAfter before notBefore: expired
        Issue("mallory", "mallory", "otherca", "client.ext", 30);
    }

    public string Dir { get; } = Path.Combine(Path.GetTempPath(), $"tcpfork-tls-{Guid.NewGuid():N}");

    public string Pem(string name) => Path.Combine(Dir, name + ".pem");

    public string Key(string name) => Path.Combine(Dir, name + ".key");

    /// <summary>A copy of the server's certificate and key in a directory of their own (<paramref name="name"/>), for a test that rewrites them.</summary>
    public (string Cert, string Key) RotatableCopy(string name)
    {
        string dir = Path.Combine(Dir, name);
        Directory.CreateDirectory(dir);
        (string cert, string key) = (Path.Combine(dir, "cert.pem"), Path.Combine(dir, "key.pem"));
        File.Copy(Pem("server"), cert, overwrite: true);
        File.Copy(Key("server"), key, overwrite: true);
        return (cert, key);
    }

    /// <summary>Overwrites <paramref name="cert"/> and <paramref name="key"/> with the rotated certificate (CN=rotated.localhost) and its key.</summary>
    public void Rotate(string cert, string key)
    {
        File.Copy(Pem("server2"), cert, overwrite: true);
        File.Copy(Key("server2"), key, overwrite: true);
    }

    /// <summary>The <c>--tls-*</c> arguments for the server certificate, plus <paramref name="extra"/>.</summary>
    public string[] ServerArgs(params string[] extra) => ["--tls-cert", Pem("server"), "--tls-key", Key("server"), .. extra];

    private void SelfSigned(string name, string cn) => OpenSsl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", Key(name), "-out", Pem(name), "-days", "30", "-subj", "/CN=" + cn);

    private void Issue(string name, string cn, string ca, string ext, int days)
    {
        string csr = Path.Combine(Dir, name + ".csr");
        OpenSsl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", Key(name), "-out", csr, "-subj", "/CN=" + cn);
        OpenSsl("x509", "-req", "-in", csr, "-CA", Pem(ca), "-CAkey", Key(ca), "-CAcreateserial", "-out", Pem(name),
            "-days", days.ToString(System.Globalization.CultureInfo.InvariantCulture), "-extfile", Path.Combine(Dir, ext));
    }

    private static void OpenSsl(params string[] args)
    {
        (int code, _, string stderr) = Run.Command("openssl", args);
        Assert.True(code == 0, $"openssl {string.Join(' ', args)}: {stderr}");
    }

    /// <summary>A .NET TLS client that trusts only the test CA (and checks the name localhost), with an optional client certificate.</summary>
    public async Task<SslStream> ConnectAsync(int port, string? clientName = null, SslProtocols protocols = SslProtocols.None, string[]? alpn = null)
    {
        Socket socket = EchoClient.Connect(port);
        var tls = new SslStream(new NetworkStream(socket, ownsSocket: true));
        X509Certificate2 ca = X509CertificateLoader.LoadCertificateFromFile(Pem("ca"));
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = "localhost",
            EnabledSslProtocols = protocols,
            CertificateChainPolicy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck, CustomTrustStore = { ca } },
            ApplicationProtocols = alpn?.Select(p => new SslApplicationProtocol(p)).ToList(),
        };
        if (clientName is not null)
        {
            options.ClientCertificates = [X509Certificate2.CreateFromPemFile(Pem(clientName), Key(clientName))];
        }
        using var cts = new CancellationTokenSource(EchoClient.Timeout);
        await tls.AuthenticateAsClientAsync(options, cts.Token);
        return tls;
    }

    /// <summary>Writes <paramref name="data"/>, sends close_notify, reads until the server's.</summary>
    public static async Task<byte[]> RoundTripAsync(SslStream tls, byte[] data)
    {
        using var cts = new CancellationTokenSource(EchoClient.Timeout);
        await tls.WriteAsync(data, cts.Token);
        await tls.ShutdownAsync();
        var back = new MemoryStream();
        await tls.CopyToAsync(back, cts.Token);
        return back.ToArray();
    }

    /// <summary>One TLS connection to an echo server: <paramref name="data"/> there and back.</summary>
    public async Task<byte[]> EchoOnceAsync(int port, byte[] data)
    {
        using SslStream tls = await ConnectAsync(port);
        return await RoundTripAsync(tls, data);
    }

    public void Dispose() => Directory.Delete(Dir, recursive: true);
}
