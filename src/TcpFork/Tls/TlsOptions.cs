using System.Security.Authentication;

namespace TcpFork;

/// <summary>Whether a TLS client must present a certificate signed by <see cref="TlsOptions.ClientCaFile"/>.</summary>
public enum TlsClientCertificate
{
    /// <summary>The client is asked for one; a client without one is served, a bad one refused.</summary>
    Optional,

    /// <summary>A client without a valid certificate is refused.</summary>
    Require,
}

/// <summary>
/// TLS for every connection (<see cref="TcpForkServerOptions.Tls"/>): the certificate and key are read
/// once by the parent, at start (before <see cref="TcpForkServerOptions.User"/> takes effect, so
/// root-only key files work) and again on SIGHUP; each child runs the handshake itself and its handler
/// reads and writes plaintext through <see cref="Connection.Stream"/>. See docs/tls.md.
/// </summary>
public sealed class TlsOptions
{
    /// <summary>The longest <see cref="HandshakeTimeout"/>: one hour.</summary>
    public static readonly TimeSpan HandshakeTimeoutLimit = TimeSpan.FromHours(1);

    /// <summary>Serves TLS with the PEM certificate chain in <paramref name="certificateFile"/> (the server's certificate first) and the PEM private key in <paramref name="keyFile"/>.</summary>
    public TlsOptions(string certificateFile, string keyFile)
    {
        ArgumentException.ThrowIfNullOrEmpty(certificateFile);
        ArgumentException.ThrowIfNullOrEmpty(keyFile);
        CertificateFile = certificateFile;
        KeyFile = keyFile;
    }

    /// <summary>The PEM file holding the server's certificate, then any intermediate certificates sent with it.</summary>
    public string CertificateFile { get; }

    /// <summary>The PEM file holding the private key (PKCS#8, RSA or EC; not encrypted).</summary>
    public string KeyFile { get; }

    /// <summary>
    /// PEM file of the certificate authorities a client certificate must chain to (mutual TLS); read
    /// with the certificate at start and on SIGHUP. Defaults to null: no client certificate is asked for.
    /// </summary>
    public string? ClientCaFile { get; set; }

    /// <summary>With <see cref="ClientCaFile"/>: whether a client certificate is required. Defaults to <see cref="TlsClientCertificate.Require"/>.</summary>
    public TlsClientCertificate ClientCertificate { get; set; } = TlsClientCertificate.Require;

    /// <summary>The oldest protocol served: <see cref="SslProtocols.Tls12"/> or <see cref="SslProtocols.Tls13"/>. Defaults to <see cref="SslProtocols.Tls12"/>.</summary>
    public SslProtocols MinimumVersion { get; set; } = SslProtocols.Tls12;

    /// <summary>ALPN protocols offered, most preferred first (<c>h2</c>, <c>http/1.1</c>). Defaults to none (no ALPN).</summary>
    public IList<string> ApplicationProtocols { get; } = new List<string>();

    /// <summary>How long a child waits for the client to complete the handshake before it logs and exits. Defaults to 10 seconds.</summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> or <see cref="ArgumentException"/> for a setting out of range.</summary>
    public void Validate()
    {
        if (MinimumVersion is not (SslProtocols.Tls12 or SslProtocols.Tls13))
        {
            throw new ArgumentOutOfRangeException("TcpForkServerOptions.Tls.MinimumVersion", MinimumVersion, "must be Tls12 or Tls13");
        }
        if (HandshakeTimeout <= TimeSpan.Zero || HandshakeTimeout > HandshakeTimeoutLimit)
        {
            throw new ArgumentOutOfRangeException("TcpForkServerOptions.Tls.HandshakeTimeout", HandshakeTimeout, "must be positive and at most one hour");
        }
        if (!Enum.IsDefined(ClientCertificate))
        {
            throw new ArgumentOutOfRangeException("TcpForkServerOptions.Tls.ClientCertificate", ClientCertificate, "unknown value");
        }
        foreach (string p in ApplicationProtocols)
        {
            if (string.IsNullOrEmpty(p) || System.Text.Encoding.UTF8.GetByteCount(p) > 255 || p.Contains(',', StringComparison.Ordinal))
            {
                throw new ArgumentException($"ALPN protocol '{p}' must be 1 to 255 bytes without a comma", "TcpForkServerOptions.Tls.ApplicationProtocols");
            }
        }
    }
}
