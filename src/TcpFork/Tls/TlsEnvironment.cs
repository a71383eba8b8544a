using System.Globalization;
using System.Security.Authentication;

namespace TcpFork;

/// <summary>
/// The UCSPI-TLS variables a program run by <c>tcpfork exec --tls-cert …</c> gets, as ucspi-ssl's
/// sslserver <c>-s</c> and s6-tlsserver set them (docs/tls.md lists them): SSL_PROTOCOL (<c>TLSv1.3</c>),
/// SSL_CIPHER (the IANA suite name), SSL_TLS_SNI_SERVERNAME when the client sent one, and for a client
/// certificate SSL_CLIENT_S_DN, SSL_CLIENT_I_DN, SSL_CLIENT_M_SERIAL, SSL_CLIENT_V_START,
/// SSL_CLIENT_V_END and s6's SSL_PEER_CERT_SUBJECT and SSL_PEER_CERT_HASH (SHA-256 of the DER, hex).
/// </summary>
internal static class TlsEnvironment
{
    /// <summary>Every name set here: removed from tcpfork's own environment first, so a stale one never reaches the program.</summary>
    public static readonly string[] Names =
    [
        "SSL_PROTOCOL", "SSL_CIPHER", "SSL_TLS_SNI_SERVERNAME", "SSL_CLIENT_S_DN", "SSL_CLIENT_I_DN", "SSL_CLIENT_M_SERIAL",
        "SSL_CLIENT_V_START", "SSL_CLIENT_V_END", "SSL_PEER_CERT_SUBJECT", "SSL_PEER_CERT_HASH",
    ];

    public static IEnumerable<string> Entries(Connection tls)
    {
        yield return "SSL_PROTOCOL=" + tls.TlsProtocol switch
        {
            SslProtocols.Tls13 => "TLSv1.3",
            SslProtocols.Tls12 => "TLSv1.2",
            var other => other.ToString(),
        };
        yield return "SSL_CIPHER=" + tls.TlsCipherSuite;
        if (tls.TlsServerName is { } host)
        {
            yield return "SSL_TLS_SNI_SERVERNAME=" + host;
        }
        if (tls.ClientCertificate is { } client)
        {
            yield return "SSL_CLIENT_S_DN=" + client.Subject;
            yield return "SSL_CLIENT_I_DN=" + client.Issuer;
            yield return "SSL_CLIENT_M_SERIAL=" + client.SerialNumber;
            yield return "SSL_CLIENT_V_START=" + Time(client.NotBefore);
            yield return "SSL_CLIENT_V_END=" + Time(client.NotAfter);
            yield return "SSL_PEER_CERT_SUBJECT=" + client.Subject;
            yield return "SSL_PEER_CERT_HASH=" + Convert.ToHexStringLower(client.GetCertHash(System.Security.Cryptography.HashAlgorithmName.SHA256));
        }
    }

    private static string Time(DateTime t) => t.ToUniversalTime().ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
}
