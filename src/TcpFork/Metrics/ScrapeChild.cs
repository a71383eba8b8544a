using System.Runtime.InteropServices;

namespace TcpFork;

/// <summary>
/// One scrape, in a process of its own (forked, or spawned in the metrics child role): reads one HTTP
/// request for at most <see cref="RequestTimeout"/>, answers <c>GET /metrics</c> with the block's text
/// (404 for another path, 405 for another method, 400 for what is not HTTP) and exits. A client that
/// sends nothing or too little costs this process its timeout, nothing else. Allocation-free: it runs
/// in a forked copy of the parent, which starts no thread.
/// </summary>
internal static unsafe class ScrapeChild
{
    /// <summary>The spawned role's variable: the log settings (<see cref="ChildRole"/>'s form); the connection is on 3, the block on 4.</summary>
    public const string RoleVariable = ChildRole.Prefix + "METRICS";
    public const int ConnectionFd = 3, BlockFd = 4;

    /// <summary>How long a scraper has to send its request, and each write of the answer to go out.</summary>
    public static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(3);

    private const int MaxRequest = 8192;

    /// <summary>In a spawned process: true (and the exit code) when it is a scrape child, after serving; false elsewhere.</summary>
    public static bool TryServeSpawned(out int exitCode)
    {
        exitCode = 0;
        string? settingsText = Environment.GetEnvironmentVariable(RoleVariable);
        if (settingsText is null)
        {
            return false;
        }
        Environment.SetEnvironmentVariable(RoleVariable, null);
        ChildRole.Settings settings = ChildRole.DecodeSettings(settingsText);
        var log = new ServerLog(settings.Level, format: settings.Format, timestamps: settings.Timestamps) { ChildLineByLine = true };
        exitCode = Serve(ConnectionFd, MetricsBlock.MapReadOnly(BlockFd), log);
        Interop.Close(BlockFd);
        return true;
    }

    /// <summary>In a forked child, right after fork: never returns.</summary>
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    public static void RunForked(int fd, int blockFd, ServerLog log)
    {
        int code = 1;
        try
        {
            MetricsData* data = MetricsBlock.MapReadOnly(blockFd);
            Interop.CloseAllAbove2Except(fd);
            ChildProcess.ResetSignals();
            SigSet none;
            Interop.SigEmptySet(&none);
            Interop.PthreadSigMask(Interop.SIG_SETMASK, &none, null);
            code = Serve(fd, data, log);
        }
        finally
        {
            log.Flush();
            Interop.Exit(code);
        }
        throw new InvalidOperationException("unreachable: _exit returned");
    }

    /// <summary>Serves the scrape on <paramref name="fd"/> and closes it; returns 0 when a request was answered.</summary>
    private static int Serve(int fd, MetricsData* data, ServerLog log)
    {
        byte* request = (byte*)NativeMemory.Alloc(MaxRequest);
        byte* body = (byte*)NativeMemory.Alloc(MetricsText.Capacity);
        try
        {
            SockAddr peer = default;
            int len = SockAddr.Capacity;
            Interop.GetPeerName(fd, &peer, &len);
            peer.Length = len;
            int n = ReadRequest(fd, request, out string failure);
            if (n < 0)
            {
                log.ScrapeFailed(peer, failure);
                return 1;
            }
            string status = Route(new ReadOnlySpan<byte>(request, n), out bool head);
            int bodyLength = status[0] == '2' && data is not null ? MetricsText.Render(data, body, MetricsText.Capacity) : 0;
            if (status[0] == '2' && data is null)
            {
                status = "503 Service Unavailable";
            }
            bool sent = Respond(fd, status, new ReadOnlySpan<byte>(body, head ? 0 : bodyLength), bodyLength);
            if (!sent || status[0] != '2')
            {
                log.ScrapeFailed(peer, sent ? status : "the answer could not be sent");
            }
            return sent && status[0] == '2' ? 0 : 1;
        }
        finally
        {
            Interop.Close(fd);
            NativeMemory.Free(request);
            NativeMemory.Free(body);
        }
    }

    /// <summary>Reads up to the blank line that ends the headers; its length, or -1 and why not.</summary>
    private static int ReadRequest(int fd, byte* buffer, out string failure)
    {
        failure = "";
        long deadline = Environment.TickCount64 + (long)RequestTimeout.TotalMilliseconds;
        int n = 0;
        while (true)
        {
            long left = deadline - Environment.TickCount64;
            if (left <= 0 || Interop.SetTimeouts(fd, left) < 0)
            {
                failure = "no request within the timeout";
                return -1;
            }
            nint r = Interop.Read(fd, buffer + n, (nuint)(MaxRequest - n));
            if (r <= 0)
            {
                failure = r == 0 ? "closed before a whole request" : Interop.LastError == Errno.EAGAIN ? "no request within the timeout" : "read failed";
                return -1;
            }
            n += (int)r;
            var text = new ReadOnlySpan<byte>(buffer, n);
            if (text.IndexOf("\r\n\r\n"u8) >= 0 || text.IndexOf("\n\n"u8) >= 0)
            {
                return n;
            }
            if (n == MaxRequest)
            {
                failure = "request headers longer than 8 KiB";
                return -1;
            }
        }
    }

    /// <summary>The status for a request: only <c>GET</c> (or <c>HEAD</c>) of <c>/metrics</c> is served.</summary>
    private static string Route(ReadOnlySpan<byte> request, out bool head)
    {
        head = false;
        int end = request.IndexOf((byte)'\n');
        ReadOnlySpan<byte> line = (end < 0 ? request : request[..end]).TrimEnd((byte)'\r');
        int sp1 = line.IndexOf((byte)' ');
        int sp2 = sp1 < 0 ? -1 : line[(sp1 + 1)..].IndexOf((byte)' ');
        if (end < 0 || sp1 <= 0 || sp2 <= 0 || !line[(sp1 + sp2 + 2)..].StartsWith("HTTP/1."u8))
        {
            return "400 Bad Request";
        }
        ReadOnlySpan<byte> method = line[..sp1], target = line.Slice(sp1 + 1, sp2);
        int query = target.IndexOf((byte)'?');
        ReadOnlySpan<byte> path = query < 0 ? target : target[..query];
        if (!path.SequenceEqual("/metrics"u8))
        {
            return "404 Not Found";
        }
        head = method.SequenceEqual("HEAD"u8);
        return head || method.SequenceEqual("GET"u8) ? "200 OK" : "405 Method Not Allowed";
    }

    private static bool Respond(int fd, string status, ReadOnlySpan<byte> body, int contentLength)
    {
        Span<byte> header = stackalloc byte[256];
        int n = 0;
        Append(header, ref n, "HTTP/1.1 "u8);
        n += System.Text.Encoding.ASCII.GetBytes(status, header[n..]);
        Append(header, ref n, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nConnection: close\r\nContent-Length: "u8);
        System.Buffers.Text.Utf8Formatter.TryFormat(contentLength, header[n..], out int digits);
        n += digits;
        Append(header, ref n, "\r\n\r\n"u8);
        if (Interop.SetTimeouts(fd, (long)RequestTimeout.TotalMilliseconds) < 0)
        {
            return false;
        }
        bool sent = SendAll(fd, header[..n]) && SendAll(fd, body);
        Interop.Shutdown(fd, Interop.SHUT_WR);
        return sent;
    }

    private static void Append(Span<byte> into, ref int n, ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(into[n..]);
        n += bytes.Length;
    }

    private static bool SendAll(int fd, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            for (int done = 0; done < data.Length;)
            {
                nint r = Interop.Send(fd, p + done, (nuint)(data.Length - done));
                if (r <= 0)
                {
                    return false;
                }
                done += (int)r;
            }
        }
        return true;
    }
}
