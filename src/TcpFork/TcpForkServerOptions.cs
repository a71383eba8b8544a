namespace TcpFork;

/// <summary>Options for <see cref="TcpForkServer"/>.</summary>
public sealed class TcpForkServerOptions
{
    /// <summary>The largest <see cref="MaxConnections"/>.</summary>
    public const int MaxConnectionsLimit = 1_000_000;

    /// <summary>The largest <see cref="Backlog"/>.</summary>
    public const int BacklogLimit = 65535;

    /// <summary>The largest <see cref="KeepAliveIdle"/> and <see cref="KeepAliveInterval"/>, in seconds (the kernel's).</summary>
    public const int KeepAliveSecondsLimit = 32767;

    /// <summary>The largest <see cref="KeepAliveCount"/> (the kernel's).</summary>
    public const int KeepAliveCountLimit = 127;

    /// <summary>Where to listen. Defaults to <c>127.0.0.1:0</c> (an ephemeral port) when empty.</summary>
    public IList<ListenAddress> Listen { get; } = new List<ListenAddress>();

    /// <summary>
    /// Whether to serve the listening sockets a service manager passes (systemd socket activation:
    /// <c>LISTEN_PID</c> names this process, <c>LISTEN_FDS</c> sockets from descriptor 3, named by
    /// <c>LISTEN_FDNAMES</c>). They are made close-on-exec and non-blocking, get the keepalive settings,
    /// and the three variables are removed from the environment before any child runs. They cannot be
    /// combined with <see cref="Listen"/> (an <see cref="ArgumentException"/> from Run). At a stop no
    /// SYN-dropping filter is attached to them — the service manager keeps them for the next instance —
    /// and a unix socket's file is left to it. Without the variables (or with another process's
    /// <c>LISTEN_PID</c>) nothing changes. Defaults to true.
    /// </summary>
    public bool SocketActivation { get; set; } = true;

    /// <summary>
    /// Whether to tell a service manager how the server is doing (systemd's sd_notify protocol, for
    /// <c>Type=notify</c> or <c>Type=notify-reload</c>), when <c>NOTIFY_SOCKET</c> names a unix datagram
    /// socket (a path, or an abstract name with a leading <c>@</c>): <c>READY=1</c> once serving,
    /// <c>STATUS=active N/LIMIT connections</c> when that changes (at most once a second),
    /// <c>RELOADING=1</c> then <c>READY=1</c> around a SIGHUP reload, <c>STOPPING=1</c> at the first stop
    /// signal, and <c>WATCHDOG=1</c> every half <c>WATCHDOG_USEC</c> when that is set (for this process,
    /// if <c>WATCHDOG_PID</c> is). <c>NOTIFY_SOCKET</c>, <c>WATCHDOG_USEC</c> and <c>WATCHDOG_PID</c> are
    /// removed from the environment before any child runs. Defaults to true.
    /// </summary>
    public bool NotifyServiceManager { get; set; } = true;

    /// <summary>How children are created. Defaults to <see cref="ProcessMode.Auto"/>.</summary>
    public ProcessMode Mode { get; set; } = ProcessMode.Auto;

    /// <summary>
    /// The most connections served at once; at the limit the listeners are not polled and clients wait
    /// in the kernel's backlog. Defaults to 1000.
    /// </summary>
    public int MaxConnections { get; set; } = 1000;

    /// <summary>The listen(2) backlog. Defaults to 1024.</summary>
    public int Backlog { get; set; } = 1024;

    /// <summary>How long SIGTERM/SIGINT waits for running children before terminating them. Defaults to 10 seconds.</summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long children get between SIGTERM and SIGKILL at the end of a drain. Defaults to 2 seconds.</summary>
    public TimeSpan KillGrace { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Whether accepted TCP connections send keepalive probes (SO_KEEPALIVE), so a client that vanished
    /// without a FIN or a reset (power lost, a NAT that forgot the flow) is found dead and its child gets
    /// an error (ETIMEDOUT) on its next read instead of holding its slot forever. Set on the listening
    /// sockets, which accepted connections inherit it from: no system call per connection. Not used for
    /// unix sockets. Defaults to true.
    /// </summary>
    public bool KeepAlive { get; set; } = true;

    /// <summary>With <see cref="KeepAlive"/>: how long a connection is quiet before the first probe (TCP_KEEPIDLE), whole seconds from 1 to 32767. Defaults to 60 seconds.</summary>
    public TimeSpan KeepAliveIdle { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>With <see cref="KeepAlive"/>: the time between unanswered probes (TCP_KEEPINTVL), whole seconds from 1 to 32767. Defaults to 15 seconds.</summary>
    public TimeSpan KeepAliveInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// With <see cref="KeepAlive"/>: unanswered probes after which the connection is dropped (TCP_KEEPCNT),
    /// 1 to 127. Defaults to 4: with the other defaults a dead peer is found 2 minutes after it went quiet.
    /// </summary>
    public int KeepAliveCount { get; set; } = 4;

    /// <summary>
    /// Whether children end when the parent dies without a drain (SIGKILL, a crash, the OOM killer): each
    /// child asks the kernel for SIGKILL when its parent goes (prctl PR_SET_PDEATHSIG). SIGKILL, because
    /// a parent that died cannot give the grace period and the follow-up SIGKILL a SIGTERM would need.
    /// The signal reaches the child itself (the forked or spawned process, or the program it executes),
    /// not what that one started; a set-user-ID program loses it at exec. With an
    /// <see cref="ExecProgram"/> and no limits the program is then started through a tcpfork child (fork or
    /// spawn), which sets it before exec, instead of spawned directly. A clean stop (SIGTERM) drains as
    /// always. Defaults to false: like tcpserver's, children finish their connections when the parent dies.
    /// </summary>
    public bool DieWithParent { get; set; }

    /// <summary>
    /// SO_REUSEPORT on the TCP listeners: several tcpfork processes (of the same user, each with this
    /// set) listen on one port and the kernel spreads new connections among them, for more instances
    /// on one machine or a restart beside the running one. A stopping instance serves what its own
    /// accept queue holds before it closes (its new handshakes go to the others). Defaults to false.
    /// </summary>
    public bool ReusePort { get; set; }

    /// <summary>
    /// Whether SIGUSR2 upgrades the server in place (as nginx's does): the parent starts its executable
    /// again — the file at the path it was started from, so a replaced binary — with the same arguments,
    /// hands it the listening sockets, and once the new parent says it serves, stops accepting and drains
    /// its own children, however long they run, then exits 0. No connection is refused or cut. The new
    /// parent runs <c>Main</c> again and must build the same server: it serves the sockets handed over
    /// instead of <see cref="Listen"/>. Without it SIGUSR2 is logged and ignored. See docs/upgrade.md.
    /// Defaults to false.
    /// </summary>
    public bool Upgrade { get; set; }

    /// <summary>How long the parent stops accepting after a resource error (EMFILE, a failed fork…). Defaults to 100 ms.</summary>
    public TimeSpan ErrorBackoff { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>How much is logged to stderr. Defaults to <see cref="LogLevel.Normal"/>.</summary>
    public LogLevel LogLevel { get; set; } = LogLevel.Normal;

    /// <summary>How each log line is written: text (<c>tcpfork: …</c>) or one JSON object a line (docs/logging.md). Defaults to <see cref="LogFormat.Text"/>.</summary>
    public LogFormat LogFormat { get; set; } = LogFormat.Text;

    /// <summary>Text log lines start with the time, RFC 3339 in UTC with milliseconds; JSON lines always carry it. Defaults to false.</summary>
    public bool LogTimestamps { get; set; }

    /// <summary>Whether to print <c>Listening for connections on port N</c> on stdout for each listener. Defaults to true.</summary>
    public bool AnnounceListening { get; set; } = true;

    /// <summary>
    /// Allow/deny rules, first match wins; a connection no rule matches is allowed. Network rules judge TCP
    /// clients, <c>uid:N[-M]</c> rules unix-socket clients (by SO_PEERCRED). Defaults to none.
    /// </summary>
    public IList<AccessRule> Rules { get; } = new List<AccessRule>();

    /// <summary>A rules file read at start and again on SIGHUP (after <see cref="Rules"/>). Defaults to null.</summary>
    public string? RulesFile { get; set; }

    /// <summary>Most connections at once from one IP (a unix-socket client: from one uid); 0 is no limit. Defaults to 0.</summary>
    public int MaxPerIp { get; set; }

    /// <summary>Sent (with CR LF) to a client refused by <see cref="MaxPerIp"/> before it is closed. Defaults to null (nothing).</summary>
    public string? MaxPerIpMessage { get; set; }

    /// <summary>
    /// How many leading bits of an IPv6 client's address <see cref="MaxPerIp"/> and <see cref="Rate"/> count
    /// it under: one host usually holds a whole /64, so per-/128 limits are no limit. 0 to 128; IPv4
    /// clients are always counted per address, and rules always see the whole address. Defaults to 64.
    /// </summary>
    public int Ipv6Prefix { get; set; } = 64;

    /// <summary>New connections allowed per IP (a unix-socket client: per uid) per period; over it a connection is refused and logged. Defaults to null (no limit).</summary>
    public RateLimit? Rate { get; set; }

    /// <summary>
    /// A child whose TCP connection moved no data either way for this long is ended (SIGTERM, then SIGKILL).
    /// Measured from TCP_INFO, so refused (<see cref="ArgumentException"/> at <see cref="Validate"/>) with a
    /// unix-socket listener. Defaults to null (never).
    /// </summary>
    public TimeSpan? IdleTimeout { get; set; }

    /// <summary>
    /// Whether each connection starts with a PROXY protocol header from a proxy such as HAProxy
    /// (<c>send-proxy</c>, <c>send-proxy-v2</c>), and which versions. The parent reads it before anything
    /// else happens: the client it names becomes the connection's peer and its destination the local end
    /// for the rules, <see cref="MaxPerIp"/>, <see cref="Rate"/>, <see cref="Verify"/>, the log lines,
    /// <see cref="Connection.RemoteEndPoint"/> and exec's <c>TCPREMOTEIP</c>/<c>TCPLOCALIP</c>. A v2
    /// <c>LOCAL</c> header (a health check) or an <c>UNKNOWN</c>/unspecified one keeps the socket's own
    /// addresses. A connection whose header is malformed, too long, cut short or not complete within
    /// <see cref="ProxyTimeout"/> is logged and closed. Never guessed: a header is required when on and
    /// ignored (passed to the handler as data) when off. Defaults to <see cref="TcpFork.ProxyProtocol.Off"/>.
    /// </summary>
    public ProxyProtocol ProxyProtocol { get; set; }

    /// <summary>
    /// With <see cref="ProxyProtocol"/>: the proxies allowed to send a header, as rules (first match wins;
    /// a peer no rule allows is closed at once, unread, and logged). Empty: every peer must send one.
    /// Judged on the socket's own peer, before the header. Defaults to empty.
    /// </summary>
    public IList<AccessRule> ProxyFrom { get; } = new List<AccessRule>();

    /// <summary>
    /// With <see cref="ProxyProtocol"/>: how long a connection has, from accept, to deliver its whole header
    /// before it is logged and closed. At least a millisecond. Defaults to 5 seconds.
    /// </summary>
    public TimeSpan ProxyTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A child older than this is ended (SIGTERM, then SIGKILL). Defaults to null (never).</summary>
    public TimeSpan? MaxLifetime { get; set; }

    /// <summary>
    /// Resource limits each child sets before its handler runs (or, for <see cref="TcpForkServer.ForProgram"/>,
    /// just before it execs the program); see <see cref="ChildLimits.AddressSpace"/> for what the memory
    /// limit means for a C# handler. Defaults to none.
    /// </summary>
    public ChildLimits Limits { get; } = new();

    /// <summary>After binding, run as this user (and its group, unless <see cref="Group"/> is set). Defaults to null (unchanged).</summary>
    public string? User { get; set; }

    /// <summary>After binding, run with this group. Defaults to null (the user's, or unchanged).</summary>
    public string? Group { get; set; }

    /// <summary>
    /// TLS on every connection: the parent reads the certificate and key at start and on SIGHUP, each
    /// child runs the handshake, and <see cref="Connection.Stream"/> is plaintext. See <see cref="TlsOptions"/>.
    /// Defaults to null (plain TCP).
    /// </summary>
    public TlsOptions? Tls { get; set; }

    /// <summary>Runs in the parent before a child is made; false refuses the connection. See <see cref="VerifyConnection"/>. Defaults to null.</summary>
    public VerifyConnection? Verify { get; set; }

    /// <summary>Runs in the parent when a child has ended. See <see cref="TcpFork.ChildExited"/>. Defaults to null.</summary>
    public ChildExited? ChildExited { get; set; }

    /// <summary>
    /// Where to serve Prometheus' text format at <c>/metrics</c> (a TCP address, <c>HOST:PORT</c>); each
    /// scrape is answered by a child process of its own, so the parent never waits on a scraper
    /// (docs/metrics.md). The same counters are also published to <see cref="System.Diagnostics.Metrics"/>
    /// as the meter <c>TcpFork</c>, with or without this option. Defaults to null (off).
    /// </summary>
    public ListenAddress? Metrics { get; set; }

    /// <summary>
    /// Throws <see cref="ArgumentOutOfRangeException"/> naming the first option out of range, or
    /// <see cref="ArgumentException"/> for options that do not go together (<see cref="IdleTimeout"/> with a unix-socket listener).
    /// </summary>
    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxConnections, 1, nameof(MaxConnections));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxConnections, MaxConnectionsLimit, nameof(MaxConnections));
        ArgumentOutOfRangeException.ThrowIfLessThan(Backlog, 1, nameof(Backlog));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(Backlog, BacklogLimit, nameof(Backlog));
        ArgumentOutOfRangeException.ThrowIfLessThan(DrainTimeout, TimeSpan.Zero, nameof(DrainTimeout));
        ArgumentOutOfRangeException.ThrowIfLessThan(KillGrace, TimeSpan.Zero, nameof(KillGrace));
        ArgumentOutOfRangeException.ThrowIfLessThan(ErrorBackoff, TimeSpan.Zero, nameof(ErrorBackoff));
        ArgumentOutOfRangeException.ThrowIfNegative(MaxPerIp, nameof(MaxPerIp));
        ArgumentOutOfRangeException.ThrowIfNegative(Ipv6Prefix, nameof(Ipv6Prefix));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(Ipv6Prefix, 128, nameof(Ipv6Prefix));
        if (IdleTimeout is { } idle && idle <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(IdleTimeout), idle, "must be positive");
        }
        if (IdleTimeout is not null && Listen.Any(l => l.UnixPath is not null))
        {
            throw new ArgumentException(
                "TcpForkServerOptions.IdleTimeout cannot be used with a unix-socket listener: idle time is measured from TCP_INFO, which unix sockets lack",
                nameof(IdleTimeout));
        }
        if (MaxLifetime is { } life && life <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxLifetime), life, "must be positive");
        }
        if (Metrics?.UnixPath is not null)
        {
            throw new ArgumentException("TcpForkServerOptions.Metrics must be a TCP address (HOST:PORT), not a unix socket: Prometheus scrapes over TCP", nameof(Metrics));
        }
        CheckKeepAliveSeconds(KeepAliveIdle, nameof(KeepAliveIdle));
        CheckKeepAliveSeconds(KeepAliveInterval, nameof(KeepAliveInterval));
        ArgumentOutOfRangeException.ThrowIfLessThan(KeepAliveCount, 1, nameof(KeepAliveCount));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(KeepAliveCount, KeepAliveCountLimit, nameof(KeepAliveCount));
        Limits.Validate(childrenKeepCapabilities: User is null);
        if (!Enum.IsDefined(ProxyProtocol))
        {
            throw new ArgumentOutOfRangeException(nameof(ProxyProtocol), ProxyProtocol, "unknown PROXY protocol setting");
        }
        if (ProxyTimeout < TimeSpan.FromMilliseconds(1))
        {
            throw new ArgumentOutOfRangeException(nameof(ProxyTimeout), ProxyTimeout, "must be at least a millisecond");
        }
        if (ProxyFrom.Count > 0 && ProxyProtocol == ProxyProtocol.Off)
        {
            throw new ArgumentException("TcpForkServerOptions.ProxyFrom needs TcpForkServerOptions.ProxyProtocol: without it no header is read", nameof(ProxyFrom));
        }
        Tls?.Validate();
        if (!Enum.IsDefined(Mode))
        {
            throw new ArgumentOutOfRangeException(nameof(Mode), Mode, "unknown process mode");
        }
    }

    private static void CheckKeepAliveSeconds(TimeSpan value, string name)
    {
        if (value < TimeSpan.FromSeconds(1) || value > TimeSpan.FromSeconds(KeepAliveSecondsLimit) || value.Ticks % TimeSpan.TicksPerSecond != 0)
        {
            throw new ArgumentOutOfRangeException(name, value, $"must be whole seconds from 1 to {KeepAliveSecondsLimit}");
        }
    }
}
