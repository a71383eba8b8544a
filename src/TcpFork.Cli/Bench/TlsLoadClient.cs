using System.Diagnostics;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;

namespace TcpFork.Cli.Bench;

/// <summary>
/// <c>tcpfork bench --tls</c>: the rate and bulk workloads over TLS (SslStream, synchronous, one thread per
/// connection as the plain client). The server's certificate is not verified: the benchmark measures, it
/// does not authenticate. By default each connection is a full handshake, so the rate workload's conn/s is
/// handshakes/s; with <c>--tls-resume</c> a connection may resume the session the client cached from an
/// earlier one (TLS 1.3 tickets). A connection ends with the client's close_notify after its last echo,
/// then the server's close_notify or EOF is expected.
/// </summary>
internal static class TlsLoadClient
{
    // .NET's client resumes by default: it keeps the last session (ticket) per target host, process-wide,
    // and offers it on the next connection to that host. AllowTlsResume = false gives that connection an
    // SSL_CTX with no session cache, the same as the System.Net.Security.DisableTlsResume switch, but per
    // connection, whatever else the process set.
    private static readonly SslClientAuthenticationOptions s_full = Options(resume: false), s_resuming = Options(resume: true);

    private static SslClientAuthenticationOptions Options(bool resume) => new()
    {
        TargetHost = "localhost", // a host name, not an address: .NET keys its session cache by it
        RemoteCertificateValidationCallback = (_, _, _, _) => true,
        AllowTlsResume = resume,
    };

    /// <summary>Connects and handshakes; null (failure counted) on error.</summary>
    public static SslStream? Connect(LoadClient client, bool resume, BenchResult r, out Socket? socket)
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
            tls.AuthenticateAsClient(resume ? s_resuming : s_full);
            return tls;
        }
        catch (Exception e) when (e is IOException or AuthenticationException)
        {
            r.Fail(Classify(e));
            tls.Dispose();
            return null;
        }
    }

    /// <summary>One connection of the rate workload: handshake, R echo round trips, close_notify, EOF.</summary>
    public static void EchoConnection(LoadClient client, bool resume, byte[] payload, byte[] back, int rounds, BenchResult r)
    {
        long start = Stopwatch.GetTimestamp();
        using SslStream? tls = Connect(client, resume, r, out Socket? socket);
        if (tls is null || socket is null)
        {
            return;
        }
        try
        {
            for (int round = 0; round < rounds; round++)
            {
                tls.Write(payload);
                tls.ReadExactly(back);
                if (!back.AsSpan().SequenceEqual(payload))
                {
                    r.Fail(Failure.Mismatch);
                    return;
                }
            }
            Close(tls, socket);
            if (tls.Read(back) != 0)
            {
                r.Fail(Failure.Mismatch);
                return;
            }
            r.Ok++;
            r.Bytes += 2L * payload.Length * rounds;
            r.LatencyTicks.Add(Stopwatch.GetTimestamp() - start);
        }
        catch (Exception e) when (e is IOException or AuthenticationException)
        {
            r.Fail(e is EndOfStreamException ? Failure.Short : Classify(e));
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
        using SslStream? tls = Connect(client, resume: false, w, out Socket? socket);
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
