using System.Net.Security;
using System.Security.Cryptography.X509Certificates;

namespace TcpFork;

/// <summary>
/// A spawned child's certificate context without the system trust store. <see cref="SslStreamCertificateContext.Create(X509Certificate2, X509Certificate2Collection?, bool, SslCertificateTrust?)"/>
/// builds the server certificate's chain, and on Linux the first chain build of a process loads every CA of
/// /etc/ssl/certs (the bundle, then 170-odd files): some 20 ms of each spawned child's start, measured with
/// strace, the largest part of a spawn-mode handshake. The chain it finds is the intermediates of the
/// certificate file either way (a root at its end, trusted or not, is trimmed), so the
/// store is pointed at nothing while the context is made: .NET reads <c>SSL_CERT_FILE</c> and
/// <c>SSL_CERT_DIR</c> when it first loads it. Both are restored afterwards (the runtime keeps the
/// empty store for the process). Only for tcpfork's own handlers (echo, the relay to an exec'd program),
/// which validate nothing against the system's CAs (a client certificate is checked against
/// <see cref="TlsOptions.ClientCaFile"/> alone); a library handler might make its own TLS connections.
/// </summary>
internal static class NoSystemTrustStore
{
    private const string File = "SSL_CERT_FILE", Dir = "SSL_CERT_DIR";

    public static SslStreamCertificateContext Create(X509Certificate2 leaf, X509Certificate2Collection intermediates)
    {
        string? file = Environment.GetEnvironmentVariable(File), dir = Environment.GetEnvironmentVariable(Dir);
        Interop.SetEnv(File, "/dev/null", 1);
        Interop.SetEnv(Dir, "/dev/null/none", 1); // a path that cannot exist: /dev/null is no directory
        try
        {
            return SslStreamCertificateContext.Create(leaf, intermediates, offline: true);
        }
        finally
        {
            Restore(File, file);
            Restore(Dir, dir);
        }
    }

    private static void Restore(string name, string? value) => _ = value is null ? Interop.UnsetEnv(name) : Interop.SetEnv(name, value, 1);
}
