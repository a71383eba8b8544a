using System.Net.Security;
using System.Security.Authentication;

namespace TcpFork;

/// <summary>
/// Start-up work, in the parent, that every child would otherwise repeat: OpenSSL 3 builds an SSL_CTX
/// on a context's first handshake (for each it fetches every cipher, group and signature algorithm from
/// its providers: most of a forked child's handshake time, measured with perf), and .NET keeps that
/// SSL_CTX in the <see cref="SslStreamCertificateContext"/>. Here one server handshake is started on
/// bytes in memory, in this one thread: a .NET client writes its ClientHello into a buffer and stops,
/// the server reads it, answers into nothing and fails at the client's missing Finished — by then the
/// SSL_CTX is made and kept. No socket, no connection, no thread (the thread census after it would say),
/// and it runs only at start and after a SIGHUP reload; forked children inherit the result.
/// </summary>
internal static class TlsWarmUp
{
    public static void Run(TlsOptions options, TlsCredentials credentials)
    {
        var hello = new MemoryStream();
        try
        {
            using var client = new SslStream(new OneWay(null, hello));
            client.AuthenticateAsClient(new SslClientAuthenticationOptions
            {
                TargetHost = "localhost",
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                RemoteCertificateValidationCallback = (_, _, _, _) => false,
            });
        }
        catch (Exception e) when (e is IOException or AuthenticationException)
        {
            // Expected: the client's reads find nothing once its ClientHello is written.
        }
        if (hello.Length == 0)
        {
            return;
        }
        try
        {
            using var server = new SslStream(new OneWay(new MemoryStream(hello.ToArray()), Stream.Null));
            server.AuthenticateAsServer(TlsHandshake.Options(options, credentials, _ => { }));
        }
        catch (Exception e) when (e is IOException or AuthenticationException)
        {
            // Expected: the client's Finished never comes.
        }
    }

    /// <summary>Reads from <paramref name="input"/> (EOF when null or done) and writes to <paramref name="output"/>; synchronous only.</summary>
    private sealed class OneWay(Stream? input, Stream output) : UnseekableStream
    {
        public override int Read(byte[] buffer, int offset, int count) => input?.Read(buffer, offset, count) ?? 0;

        public override void Write(byte[] buffer, int offset, int count) => output.Write(buffer, offset, count);

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            Task.FromResult(Read(buffer, offset, count));

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            Write(buffer, offset, count);
            return Task.CompletedTask;
        }
    }
}
