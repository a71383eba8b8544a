using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace TcpFork;

/// <summary>
/// The child's side of TLS: the handshake over the connection, synchronous and bounded by
/// <see cref="TlsOptions.HandshakeTimeout"/>, with the credentials the parent loaded. Runs only in a
/// child (forked or spawned), never in the parent. A failed handshake is logged with its reason and the
/// child exits; the server serves on.
/// </summary>
internal static class TlsHandshake
{
    /// <summary>The plaintext stream over <paramref name="connection"/>, or null when the handshake failed (logged).</summary>
    public static SslStream? Run(Connection connection, TlsServer server, out HandshakeDeadline transport)
    {
        TlsOptions o = server.Options;
        TlsCredentials credentials = server.Current;
        transport = new HandshakeDeadline(connection, o.HandshakeTimeout);
        string? certificateProblem = null;
        SslServerAuthenticationOptions auth = Options(o, credentials, problem => certificateProblem = problem);
        var tls = new SslStream(transport, leaveInnerStreamOpen: false);
        try
        {
            tls.AuthenticateAsServer(auth);
            transport.Disarm();
            if (connection.Log.IsVerbose)
            {
                connection.Log.TlsEstablished(Connection.ProcessId, tls.SslProtocol.ToString(), tls.NegotiatedCipherSuite.ToString(),
                    tls.NegotiatedApplicationProtocol.Protocol.Length > 0 ? tls.NegotiatedApplicationProtocol.ToString() : "-",
                    tls.RemoteCertificate?.Subject is { Length: > 0 } subject ? subject : "-", "-");
            }
            return tls;
        }
        catch (Exception e) when (e is AuthenticationException or IOException or TimeoutException or SocketException)
        {
            string reason = transport!.Expired ? $"timed out after {o.HandshakeTimeout.TotalSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture)} s"
                : certificateProblem is not null ? "client certificate: " + certificateProblem
                : transport.FirstByte is >= 0 and not HandshakeRecord ? $"not a TLS client (first byte 0x{transport.FirstByte:x2}{(transport.FirstByte is >= 0x20 and < 0x7f ? $" '{(char)transport.FirstByte}'" : "")}: plaintext?)"
                : Reason(e);
            connection.Log.TlsHandshakeFailed(Connection.ProcessId, reason);
            tls.Dispose();
            return null;
        }
    }

    /// <summary>
    /// The server's options for <paramref name="o"/> and <paramref name="credentials"/>; a refused client
    /// certificate's reason goes to <paramref name="refused"/> (null when it was accepted).
    /// </summary>
    public static SslServerAuthenticationOptions Options(TlsOptions o, TlsCredentials credentials, Action<string?> refused)
    {
        var auth = new SslServerAuthenticationOptions
        {
            ServerCertificateContext = credentials.Context,
            EnabledSslProtocols = o.MinimumVersion == SslProtocols.Tls13 ? SslProtocols.Tls13 : SslProtocols.Tls12 | SslProtocols.Tls13,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            AllowRenegotiation = false,
        };
        if (o.ApplicationProtocols.Count > 0)
        {
            auth.ApplicationProtocols = [.. o.ApplicationProtocols.Select(p => new SslApplicationProtocol(p))];
        }
        if (credentials.ClientCas is { } cas)
        {
            bool optional = o.ClientCertificate == TlsClientCertificate.Optional;
            auth.ClientCertificateRequired = true;
            var policy = new X509ChainPolicy
            {
                TrustMode = X509ChainTrustMode.CustomRootTrust,
                RevocationMode = X509RevocationMode.NoCheck,
                DisableCertificateDownloads = true,
            };
            policy.CustomTrustStore.AddRange(cas);
            auth.CertificateChainPolicy = policy;
            auth.RemoteCertificateValidationCallback = (_, certificate, chain, errors) =>
            {
                if (certificate is null)
                {
                    refused(optional ? null : "none presented");
                    return optional;
                }
                string? why = errors == SslPolicyErrors.None ? null : Describe(chain);
                refused(why);
                return why is null;
            };
        }
        return auth;
    }

    /// <summary>
    /// Ends the session's sending side: close_notify, then the socket's FIN. Synchronous (no socket
    /// engine thread is started for it): the handler is done with the stream.
    /// </summary>
    public static void Close(SslStream tls, HandshakeDeadline transport, int fd)
    {
        transport.SynchronousWrites = true;
        tls.ShutdownAsync().GetAwaiter().GetResult();
        Interop.Shutdown(fd, Interop.SHUT_WR);
    }

    private const int HandshakeRecord = 22;

    /// <summary>Why a client certificate's chain was refused, in words.</summary>
    private static string Describe(X509Chain? chain)
    {
        X509ChainStatusFlags flags = X509ChainStatusFlags.NoError;
        foreach (X509ChainStatus s in chain?.ChainStatus ?? [])
        {
            flags |= s.Status;
        }
        var words = new List<string>();
        if ((flags & X509ChainStatusFlags.NotTimeValid) != 0)
        {
            words.Add("expired or not yet valid");
        }
        if ((flags & (X509ChainStatusFlags.UntrustedRoot | X509ChainStatusFlags.PartialChain)) != 0)
        {
            words.Add("not issued by the client CA");
        }
        if ((flags & X509ChainStatusFlags.NotSignatureValid) != 0)
        {
            words.Add("bad signature");
        }
        if ((flags & (X509ChainStatusFlags.NotValidForUsage | X509ChainStatusFlags.InvalidExtension)) != 0)
        {
            words.Add("not valid for client authentication");
        }
        return words.Count > 0 ? string.Join(", ", words) : $"rejected ({flags})";
    }

    /// <summary>
    /// The failure in words. The runtime's own messages are resource keys in tcpfork's build; OpenSSL's
    /// error strings (<c>wrong version number</c>, <c>unexpected eof while reading</c>) are not, and name
    /// the cause: the innermost one is used when there is one.
    /// </summary>
    private static string Reason(Exception e)
    {
        string? openssl = null;
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            if (x.GetType().Name == "SslException" || x.Message.Contains(':', StringComparison.Ordinal) && x.Message.Contains("SSL", StringComparison.OrdinalIgnoreCase))
            {
                openssl = x.Message;
            }
            if (x is IOException { HResult: (int)Errno.ECONNRESET })
            {
                return "the client reset the connection";
            }
        }
        if (openssl is not null)
        {
            return openssl;
        }
        return e is IOException ? "the client closed the connection before the handshake completed" : $"handshake refused ({e.GetType().Name})";
    }
}
