namespace TcpFork;

/// <summary>A bound, listening, non-blocking socket.</summary>
internal sealed unsafe class Listener : IDisposable
{
    private Listener(SafeFd fd, SockAddr address, string? unixPath, StatX created)
    {
        Fd = fd;
        Address = address;
        _unixPath = unixPath;
        _created = created;
    }

    /// <summary>The socket file this listener created, until it removes it; and which file that was.</summary>
    private string? _unixPath;
    private readonly StatX _created;

    public SafeFd Fd { get; }

    /// <summary>The bound address, with the port the kernel chose for port 0.</summary>
    public SockAddr Address { get; }

    /// <summary>
    /// Binds and listens; throws <see cref="BindException"/> naming the address on failure. With
    /// <paramref name="options"/>' keepalive on, a TCP listener gets SO_KEEPALIVE and the TCP_KEEP*
    /// timings, which Linux copies into every connection it accepts (the keepalive timer starts at the
    /// handshake): the accept path does no system call for them.
    /// </summary>
    public static Listener Open(SockAddr address, TcpForkServerOptions options)
    {
        int fd = Interop.Socket(address.Family, Interop.SOCK_STREAM | Interop.SOCK_NONBLOCK | Interop.SOCK_CLOEXEC, 0);
        if (fd < 0)
        {
            throw new BindException(address, Interop.Error("socket"));
        }
        var handle = new SafeFd(fd);
        try
        {
            int one = 1;
            if (!address.IsUnix)
            {
                Interop.SetSockOpt(fd, Interop.SOL_SOCKET, Interop.SO_REUSEADDR, &one, sizeof(int));
            }
            // Several processes on one port, the kernel spreading new connections among them. Only
            // processes of the same user can join the group, which every instance must set.
            if (options.ReusePort && !address.IsUnix && Interop.SetSockOpt(fd, Interop.SOL_SOCKET, Interop.SO_REUSEPORT, &one, sizeof(int)) < 0)
            {
                throw new BindException(address, Interop.Error("setsockopt SO_REUSEPORT"));
            }
            if (address.Family == Interop.AF_INET6)
            {
                // [::]:p and 0.0.0.0:p can then be listened on side by side, as with tcpserver.
                Interop.SetSockOpt(fd, Interop.IPPROTO_IPV6, Interop.IPV6_V6ONLY, &one, sizeof(int));
            }
            if (!address.IsUnix && options.KeepAlive)
            {
                int idle = (int)options.KeepAliveIdle.TotalSeconds, interval = (int)options.KeepAliveInterval.TotalSeconds, count = options.KeepAliveCount;
                if (Interop.SetSockOpt(fd, Interop.SOL_SOCKET, Interop.SO_KEEPALIVE, &one, sizeof(int)) < 0
                    || Interop.SetSockOpt(fd, Interop.IPPROTO_TCP, Interop.TCP_KEEPIDLE, &idle, sizeof(int)) < 0
                    || Interop.SetSockOpt(fd, Interop.IPPROTO_TCP, Interop.TCP_KEEPINTVL, &interval, sizeof(int)) < 0
                    || Interop.SetSockOpt(fd, Interop.IPPROTO_TCP, Interop.TCP_KEEPCNT, &count, sizeof(int)) < 0)
                {
                    throw new BindException(address, Interop.Error("setsockopt keepalive"));
                }
            }
            SockAddr a = address;
            if (Interop.Bind(fd, &a, a.Length) < 0)
            {
                throw new BindException(address, Interop.Error("bind"));
            }
            if (Interop.Listen(fd, options.Backlog) < 0)
            {
                throw new BindException(address, Interop.Error("listen"));
            }
            SockAddr bound = default;
            int len = SockAddr.Capacity;
            Interop.Check(Interop.GetSockName(fd, &bound, &len), "getsockname");
            bound.Length = len;
            string? path = address.IsUnix ? System.Text.Encoding.UTF8.GetString(address.AddressBytes) : null;
            StatX created = default;
            if (path is not null && !Interop.TryStat(path, followLinks: false, out created))
            {
                path = null; // already gone (or unreadable): not ours to remove later
            }
            return new Listener(handle, bound, path, created);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Closes the socket and removes its file — once, and only while the path is still the file this
    /// listener created: in a rolling restart the successor binds the same path while this process
    /// drains, and its file must survive this one's exit.
    /// </summary>
    public void Dispose()
    {
        Fd.Dispose();
        string? path = _unixPath;
        _unixPath = null;
        if (path is not null && Interop.TryStat(path, followLinks: false, out StatX now) && now.SameFile(_created))
        {
            try
            {
                File.Delete(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Best effort: after --user the parent may no longer be allowed to remove it.
            }
        }
    }
}

