namespace TcpFork;

/// <summary>A bound, listening, non-blocking socket.</summary>
internal sealed unsafe class Listener : IDisposable
{
    private Listener(SafeFd fd, SockAddr address, string? unixPath, StatX created, string? activationName = null)
    {
        Fd = fd;
        Address = address;
        _unixPath = unixPath;
        _created = created;
        ActivationName = activationName;
    }

    /// <summary>
    /// For a socket passed by the service manager (socket activation): its name from LISTEN_FDNAMES.
    /// Null for a socket this process opened.
    /// </summary>
    public string? ActivationName { get; }

    /// <summary>True for a socket passed by the service manager, which owns it and may hand it to the next instance.</summary>
    public bool Inherited => ActivationName is not null;

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
            if (!address.IsUnix && !SetKeepAlive(fd, options))
            {
                throw new BindException(address, Interop.Error("setsockopt keepalive"));
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
    /// Takes over a listening socket passed by the service manager at <paramref name="fd"/> (socket
    /// activation): checks it is a listening stream socket, makes it close-on-exec and non-blocking, and
    /// gives a TCP one <paramref name="options"/>' keepalive as <see cref="Open"/> does. Its file (a unix
    /// socket's) belongs to the service manager and is never removed. A null <paramref name="name"/> is a
    /// socket an upgraded predecessor opened itself and handed over (docs/upgrade.md): it is this
    /// process's now, as if it had opened it, and so is its unix socket's file.
    /// </summary>
    public static Listener Adopt(int fd, string? name, TcpForkServerOptions options)
    {
        var handle = new SafeFd(fd);
        try
        {
            SockAddr bound = default;
            int len = SockAddr.Capacity;
            int type = 0, listening = 0, size = sizeof(int);
            if (Interop.GetSockName(fd, &bound, &len) < 0
                || Interop.GetSockOpt(fd, Interop.SOL_SOCKET, Interop.SO_TYPE, &type, &size) < 0
                || Interop.GetSockOpt(fd, Interop.SOL_SOCKET, Interop.SO_ACCEPTCONN, &listening, &size) < 0)
            {
                throw new ArgumentException($"socket activation: descriptor {fd} ('{name}') is not a socket: {Interop.Error("getsockname").Message}");
            }
            bound.Length = len;
            if (type != Interop.SOCK_STREAM || listening == 0 || bound.Family is not (Interop.AF_INET or Interop.AF_INET6 or Interop.AF_UNIX))
            {
                throw new ArgumentException($"socket activation: descriptor {fd} ('{name}', {bound}) is not a listening TCP or unix stream socket (in the .socket unit: ListenStream= and Accept=no)");
            }
            Interop.Check(Interop.SetCloseOnExecNonBlocking(fd), "fcntl");
            if (!bound.IsUnix && !SetKeepAlive(fd, options))
            {
                throw new BindException(bound, Interop.Error("setsockopt keepalive"));
            }
            string? path = name is null && bound.IsUnix ? System.Text.Encoding.UTF8.GetString(bound.AddressBytes) : null;
            StatX created = default;
            if (path is not null && !Interop.TryStat(path, followLinks: false, out created))
            {
                path = null;
            }
            return new Listener(handle, bound, path, created, name);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>With keepalive on, SO_KEEPALIVE and the TCP_KEEP* timings; false with errno set on failure.</summary>
    private static bool SetKeepAlive(int fd, TcpForkServerOptions options)
    {
        if (!options.KeepAlive)
        {
            return true;
        }
        int one = 1, idle = (int)options.KeepAliveIdle.TotalSeconds, interval = (int)options.KeepAliveInterval.TotalSeconds, count = options.KeepAliveCount;
        return Interop.SetSockOpt(fd, Interop.SOL_SOCKET, Interop.SO_KEEPALIVE, &one, sizeof(int)) == 0
            && Interop.SetSockOpt(fd, Interop.IPPROTO_TCP, Interop.TCP_KEEPIDLE, &idle, sizeof(int)) == 0
            && Interop.SetSockOpt(fd, Interop.IPPROTO_TCP, Interop.TCP_KEEPINTVL, &interval, sizeof(int)) == 0
            && Interop.SetSockOpt(fd, Interop.IPPROTO_TCP, Interop.TCP_KEEPCNT, &count, sizeof(int)) == 0;
    }

    /// <summary>
    /// At an upgrade's hand-over: the socket's file (a unix listener's) is the new parent's now, and
    /// <see cref="Dispose"/> then closes only this process's descriptor.
    /// </summary>
    public void KeepFile() => _unixPath = null;

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

