using System.Diagnostics;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;

namespace TcpFork.Cli.Bench;

/// <summary>
/// <c>tcpfork bench --tls --bulk</c>: one connection through SslStream, written by one thread while another
/// reads it (SslStream allows one reader and one writer at once; an OpenSSL session does not). Its cost
/// per byte is the record crypto, which every client pays alike; the rate workload, where a client's own
/// per-connection cost weighs, is <see cref="TlsHandshakeClient"/>. The server's certificate is not
/// verified, and the handshake is a full one.
/// </summary>
internal static class TlsLoadClient
{
    // .NET's client resumes by default (the last session per target host, process-wide); AllowTlsResume =
    // false gives this connection an SSL_CTX with no session cache.
    private static readonly SslClientAuthenticationOptions s_options = new()
    {
        TargetHost = "localhost",
        RemoteCertificateValidationCallback = (_, _, _, _) => true,
        AllowTlsResume = false,
    };

    /// <summary>Connects and handshakes; null (failure counted) on error.</summary>
    public static SslStream? Connect(LoadClient client, BenchResult r, out Socket? socket)
    {
        socket = null;
        int fd = client.Connect(r);
        if (fd < 0)
        {
            return null;
        }
        socket = new Socket(new SafeSocketHandle(fd, ownsHandle: true));
        var tls = new SslStream(new NetworkStream(socket, ownsSocket: true));
        try
        {
            tls.AuthenticateAsClient(s_options);
            return tls;
        }
        catch (Exception e) when (e is IOException or AuthenticationException)
        {
            r.Fail(Classify(e));
            tls.Dispose();
            return null;
        }
    }

    /// <summary>close_notify, then FIN.</summary>
    public static void Close(SslStream tls, Socket socket)
    {
        tls.ShutdownAsync().GetAwaiter().GetResult();
        socket.Shutdown(SocketShutdown.Send);
    }

    /// <summary>
    /// The bulk workload over TLS: one connection; a writer streams <paramref name="total"/> bytes of the
    /// 251-byte-period <paramref name="pattern"/> and then close_notify, while a reader checks every echoed
    /// byte as it arrives and then expects the end.
    /// </summary>
    public static BenchResult Bulk(LoadClient client, long total, byte[] pattern, int chunk, long[] progress)
    {
        var w = new BenchResult();
        var r = new BenchResult();
        using SslStream? tls = Connect(client, w, out Socket? socket);
        if (tls is null || socket is null)
        {
            return w;
        }
        long start = Stopwatch.GetTimestamp();
        var writer = new Thread(() =>
        {
            try
            {
                for (long sent = 0; sent < total;)
                {
                    int n = (int)Math.Min(chunk, total - sent);
                    tls.Write(pattern, (int)(sent % 251), n);
                    sent += n;
                }
                Close(tls, socket);
            }
            catch (IOException e)
            {
                w.Fail(Classify(e));
            }
        }) { IsBackground = true };
        var reader = new Thread(() =>
        {
            byte[] buffer = new byte[chunk];
            long got = 0;
            try
            {
                while (got < total)
                {
                    int n = tls.Read(buffer, 0, (int)Math.Min(chunk, total - got));
                    if (n == 0)
                    {
                        r.Fail(Failure.Short);
                        return;
                    }
                    if (!buffer.AsSpan(0, n).SequenceEqual(pattern.AsSpan((int)(got % 251), n)))
                    {
                        r.Fail(Failure.Mismatch);
                        return;
                    }
                    got += n;
                    Interlocked.Exchange(ref progress[0], got);
                }
                if (tls.Read(buffer, 0, 1) != 0)
                {
                    r.Fail(Failure.Mismatch);
                    return;
                }
                r.Ok = 1;
                r.Bytes = 2 * total;
                r.LatencyTicks.Add(Stopwatch.GetTimestamp() - start);
            }
            catch (IOException e)
            {
                r.Fail(Classify(e));
            }
        }) { IsBackground = true };
        writer.Start();
        reader.Start();
        writer.Join();
        reader.Join();
        return BenchResult.Merge([w, r]);
    }

    public static Failure Classify(Exception e) =>
        e.InnerException is SocketException se ? LoadClient.Classify((Errno)se.NativeErrorCode) : Failure.Other;
}
