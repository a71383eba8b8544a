using System.Diagnostics;

namespace TcpFork.Cli.Bench;

/// <summary>
/// The client side of the benchmark, kept cheap so that it is never the bottleneck: plain threads with
/// blocking sockets and raw system calls (no Socket objects, no async, no allocation per connection),
/// so almost all of its CPU time is the kernel's own work of connecting and copying.
/// </summary>
internal sealed unsafe class LoadClient(SockAddr target, int timeoutMs)
{
    /// <summary>Opens a connected socket, or returns -1 and counts the failure.</summary>
    public int Connect(BenchResult r)
    {
        int fd = Interop.Socket(target.Family, Interop.SOCK_STREAM | Interop.SOCK_CLOEXEC, 0);
        if (fd < 0)
        {
            r.Fail(Failure.Other);
            return -1;
        }
        BenchInterop.SetTimeouts(fd, timeoutMs);
        SockAddr a = target;
        if (BenchInterop.Connect(fd, &a, a.Length) < 0)
        {
            r.Fail(Classify(Interop.LastError));
            Interop.Close(fd);
            return -1;
        }
        return fd;
    }

    /// <summary>Sends all of <paramref name="data"/>; false (failure counted) on error.</summary>
    public static bool Send(int fd, ReadOnlySpan<byte> data, BenchResult r)
    {
        fixed (byte* p = data)
        {
            for (int done = 0; done < data.Length;)
            {
                nint n = Interop.Send(fd, p + done, (nuint)(data.Length - done));
                if (n < 0)
                {
                    r.Fail(Classify(Interop.LastError));
                    return false;
                }
                done += (int)n;
            }
        }
        return true;
    }

    /// <summary>
    /// Sends <paramref name="total"/> bytes of a pattern that repeats every <paramref name="period"/> bytes
    /// (<paramref name="pattern"/> holds <paramref name="chunk"/> + period of them). The pages go to the
    /// socket by reference — vmsplice into a pipe, splice to the socket — so the client does not copy what
    /// it sends; on two shared cores, a copying client would set the pace of the bulk test for every server.
    /// Falls back to send(2) where a pipe cannot be made. False (failure counted) on error.
    /// </summary>
    public static bool SendPattern(int fd, byte* pattern, int period, int chunk, long total, BenchResult r)
    {
        int* pipe = stackalloc int[2];
        if (Interop.Pipe2(pipe, Interop.O_CLOEXEC) < 0)
        {
            for (long sent = 0; sent < total; sent += chunk)
            {
                if (!Send(fd, new ReadOnlySpan<byte>(pattern + (sent % period), (int)Math.Min(chunk, total - sent)), r))
                {
                    return false;
                }
            }
            return true;
        }
        try
        {
            BenchInterop.SetPipeSize(pipe[1], chunk); // fewer system calls; the default 64 KiB works too
            for (long sent = 0; sent < total;)
            {
                nint n = BenchInterop.Vmsplice(pipe[1], pattern + (sent % period), (nuint)Math.Min(chunk, total - sent));
                if (n <= 0)
                {
                    r.Fail(Failure.Other);
                    return false;
                }
                for (nint left = n; left > 0;)
                {
                    nint m = Interop.Splice(pipe[0], fd, (nuint)left);
                    if (m <= 0)
                    {
                        r.Fail(m == 0 ? Failure.Short : Classify(Interop.LastError));
                        return false;
                    }
                    left -= m;
                }
                sent += n;
            }
            return true;
        }
        finally
        {
            Interop.Close(pipe[0]);
            Interop.Close(pipe[1]);
        }
    }

    /// <summary>Reads exactly <paramref name="into"/>.Length bytes; false (failure counted) on error or early EOF.</summary>
    public static bool Receive(int fd, Span<byte> into, BenchResult r)
    {
        fixed (byte* p = into)
        {
            for (int got = 0; got < into.Length;)
            {
                nint n = Interop.Read(fd, p + got, (nuint)(into.Length - got));
                if (n <= 0)
                {
                    r.Fail(n == 0 ? Failure.Short : Classify(Interop.LastError));
                    return false;
                }
                got += (int)n;
            }
        }
        return true;
    }

    /// <summary>True when the next read is EOF (nothing more was echoed).</summary>
    public static bool ExpectEof(int fd, BenchResult r)
    {
        byte extra;
        nint n = Interop.Read(fd, &extra, 1);
        if (n == 0)
        {
            return true;
        }
        r.Fail(n > 0 ? Failure.Mismatch : Classify(Interop.LastError));
        return false;
    }

    /// <summary>One connection of the rate workload: R echo round trips, the last one half-closed.</summary>
    public void EchoConnection(byte[] payload, byte[] back, int rounds, BenchResult r)
    {
        long start = Stopwatch.GetTimestamp();
        int fd = Connect(r);
        if (fd < 0)
        {
            return;
        }
        try
        {
            for (int round = 0; round < rounds; round++)
            {
                if (!Send(fd, payload, r))
                {
                    return;
                }
                if (round == rounds - 1)
                {
                    Interop.Shutdown(fd, Interop.SHUT_WR);
                }
                if (!Receive(fd, back, r))
                {
                    return;
                }
                if (!back.AsSpan().SequenceEqual(payload))
                {
                    r.Fail(Failure.Mismatch);
                    return;
                }
            }
            if (!ExpectEof(fd, r))
            {
                return;
            }
            r.Completed(2L * payload.Length * rounds, start);
        }
        finally
        {
            Interop.Close(fd);
        }
    }

    public static Failure Classify(Errno e) => e switch
    {
        (Errno)BenchInterop.ECONNREFUSED => Failure.Refused,
        Errno.ECONNRESET or Errno.EPIPE => Failure.Reset,
        Errno.EAGAIN or Errno.ETIMEDOUT => Failure.Timeout,
        _ => Failure.Other,
    };
}
