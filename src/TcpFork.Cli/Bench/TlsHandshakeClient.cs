using System.Diagnostics;

namespace TcpFork.Cli.Bench;

/// <summary>
/// The rate workload over TLS (<c>tcpfork bench --tls</c>, one per client thread): OpenSSL called directly
/// on a blocking socket, as the servers it measures do. .NET's SslStream client cost about 1.3 ms of CPU a
/// handshake on the 2-core machine — more than any server it loaded, on the same cores — so it measured
/// itself as much as the server and pressed every ratio towards 1. The server's certificate is not
/// verified (the benchmark measures, it does not authenticate). A full handshake per connection, or with
/// resumption the session (TLS 1.3 ticket) this thread's previous connection got. Each connection: the
/// handshake, R echo round trips, close_notify and FIN, then the server's close_notify or EOF. TCP_NODELAY,
/// as curl and browsers set it.
/// </summary>
internal sealed unsafe class TlsHandshakeClient(bool resume) : IDisposable
{
    private static readonly nint s_context = CreateContext();
    private nint _session;

    private static nint CreateContext()
    {
        nint ctx = Interop.SslCtxNew(Interop.TlsClientMethod());
        if (ctx == 0)
        {
            throw new InvalidOperationException("OpenSSL: SSL_CTX_new failed: " + Interop.OpenSslError());
        }
        Interop.SslCtxCtrl(ctx, Interop.SSL_CTRL_SET_MIN_PROTO_VERSION, Interop.TLS1_2_VERSION, null);
        return ctx;
    }

    public void EchoConnection(LoadClient client, byte[] payload, byte[] back, int rounds, BenchResult r)
    {
        long start = Stopwatch.GetTimestamp();
        int fd = client.Connect(r);
        if (fd < 0)
        {
            return;
        }
        int on = 1;
        Interop.SetSockOpt(fd, Interop.IPPROTO_TCP, Interop.TCP_NODELAY, &on, sizeof(int));
        nint ssl = Interop.SslNew(s_context);
        try
        {
            if (ssl == 0 || Interop.SslSetFd(ssl, fd) != 1)
            {
                r.Fail(Failure.Other);
                return;
            }
            fixed (byte* host = "localhost\0"u8)
            {
                Interop.SslCtrl(ssl, Interop.SSL_CTRL_SET_TLSEXT_HOSTNAME, 0, host);
            }
            if (resume && _session != 0)
            {
                Interop.SslSetSession(ssl, _session);
            }
            Interop.SslSetConnectState(ssl);
            int rc = Interop.SslDoHandshake(ssl);
            if (rc != 1)
            {
                r.Fail(Classify(ssl, rc));
                return;
            }
            for (int round = 0; round < rounds; round++)
            {
                if (!WriteAll(ssl, payload, r) || !ReadExactly(ssl, back, r))
                {
                    return;
                }
                if (!back.AsSpan().SequenceEqual(payload))
                {
                    r.Fail(Failure.Mismatch);
                    return;
                }
            }
            if (resume)
            {
                // After the echo: a TLS 1.3 server's tickets come after its Finished, and the reads have taken them.
                Interop.SslSessionFree(_session);
                _session = Interop.SslGet1Session(ssl);
            }
            Interop.SslShutdown(ssl);
            Interop.Shutdown(fd, Interop.SHUT_WR);
            fixed (byte* p = back)
            {
                int n = Interop.SslRead(ssl, p, back.Length);
                if (n > 0)
                {
                    r.Fail(Failure.Mismatch);
                    return;
                }
                int error = Interop.SslGetError(ssl, n);
                if (error is not (Interop.SSL_ERROR_ZERO_RETURN or Interop.SSL_ERROR_SYSCALL) || error == Interop.SSL_ERROR_SYSCALL && Interop.LastError != 0)
                {
                    r.Fail(Classify(ssl, n));
                    return;
                }
            }
            r.Completed(2L * payload.Length * rounds, start);
        }
        finally
        {
            Interop.SslFree(ssl);
            Interop.ErrClearError();
            Interop.Close(fd);
        }
    }

    private static bool WriteAll(nint ssl, byte[] data, BenchResult r)
    {
        fixed (byte* p = data)
        {
            for (int done = 0; done < data.Length;)
            {
                int n = Interop.SslWrite(ssl, p + done, data.Length - done);
                if (n <= 0)
                {
                    r.Fail(Classify(ssl, n));
                    return false;
                }
                done += n;
            }
        }
        return true;
    }

    private static bool ReadExactly(nint ssl, byte[] data, BenchResult r)
    {
        fixed (byte* p = data)
        {
            for (int done = 0; done < data.Length;)
            {
                int n = Interop.SslRead(ssl, p + done, data.Length - done);
                if (n <= 0)
                {
                    int error = Interop.SslGetError(ssl, n);
                    r.Fail(error == Interop.SSL_ERROR_ZERO_RETURN || error == Interop.SSL_ERROR_SYSCALL && Interop.LastError == 0 ? Failure.Short : Classify(ssl, n));
                    return false;
                }
                done += n;
            }
        }
        return true;
    }

    /// <summary>A failed call's kind: the socket's errno (refused, reset, timeout) or, for a TLS error, other.</summary>
    private static Failure Classify(nint ssl, int rc)
    {
        Errno errno = Interop.LastError;
        return Interop.SslGetError(ssl, rc) == Interop.SSL_ERROR_SYSCALL && errno != 0 ? LoadClient.Classify(errno) : Failure.Other;
    }

    public void Dispose()
    {
        Interop.SslSessionFree(_session);
        _session = 0;
    }
}
