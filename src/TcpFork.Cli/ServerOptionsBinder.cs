using System.CommandLine;
using System.CommandLine.Parsing;

namespace TcpFork.Cli;

/// <summary>
/// The options every serving command shares: where to listen, limits, mode, logging. Defaults and ranges
/// come from <see cref="TcpForkServerOptions"/>: an option not given leaves the library's default.
/// </summary>
internal sealed class ServerOptionsBinder
{
    private static readonly TcpForkServerOptions s_defaults = new();

    private readonly Option<ListenAddress[]> _listen = new("--listen", "-l")
    {
        Description = "Address to listen on: HOST:PORT, [IPV6]:PORT or unix:PATH; repeatable. Default 127.0.0.1:0 (an ephemeral port).",
        HelpName = "HOST:PORT",
        Arity = ArgumentArity.OneOrMore,
        AllowMultipleArgumentsPerToken = false,
        CustomParser = ParseListen,
    };

    private readonly Option<ProcessMode?> _mode;

    private readonly Option<int?> _maxConnections = OptionParsers.Whole("--max-connections",
        OptionParsers.WithDefault("Most connections served at once; beyond it clients wait in the backlog.", s_defaults.MaxConnections), 1, TcpForkServerOptions.MaxConnectionsLimit);

    private readonly Option<int?> _backlog = OptionParsers.Whole("--backlog", OptionParsers.WithDefault("listen(2) backlog.", s_defaults.Backlog), 1, TcpForkServerOptions.BacklogLimit);

    private readonly Option<double?> _drainTimeout = OptionParsers.Seconds("--drain-timeout",
        OptionParsers.WithDefault("Seconds SIGTERM/SIGINT waits for connections to finish before terminating them.", s_defaults.DrainTimeout.TotalSeconds), 0, 86400);

    private readonly Option<KeepAliveSetting?> _keepAlive = new("--keepalive")
    {
        Description = $"TCP keepalive for accepted connections: IDLE,INTERVAL,COUNT (seconds, seconds, probes) or 'off'. Default {KeepAliveSetting.DefaultText}: a vanished client is found after {KeepAliveSetting.DefaultMinutes} minutes.",
        HelpName = "IDLE,INTERVAL,COUNT|off",
        CustomParser = r =>
        {
            string text = r.Tokens[^1].Value;
            if (KeepAliveSetting.TryParse(text) is { } setting)
            {
                return setting;
            }
            r.AddError($"--keepalive must be IDLE,INTERVAL,COUNT (seconds from 1 to {TcpForkServerOptions.KeepAliveSecondsLimit}, seconds from 1 to {TcpForkServerOptions.KeepAliveSecondsLimit}, 1 to {TcpForkServerOptions.KeepAliveCountLimit} probes) or 'off', not '{Printable.Truncate(text)}'");
            return null;
        },
    };

    private readonly Option<string[]> _allow = Rule("--allow", allow: true);
    private readonly Option<string[]> _deny = Rule("--deny", allow: false);

    private readonly Option<string?> _rules = new("--rules")
    {
        Description = "File of rules, one a line: 'allow NETWORK' or 'deny NETWORK' (NETWORK or uid:N[-M]); # comments. Read at start and on SIGHUP.",
        HelpName = "FILE",
        CustomParser = r =>
        {
            string path = r.Tokens[^1].Value;
            if (path.Length == 0)
            {
                r.AddError("--rules needs a file name, not an empty one");
                return path;
            }
            try
            {
                AccessRule.ReadFile(path);
            }
            catch (FormatException e)
            {
                r.AddError($"--rules {e.Message}");
            }
            return path;
        },
    };

    private readonly Option<int?> _maxPerIp = OptionParsers.Whole("--max-per-ip", OptionParsers.WithDefault("Most connections at once from one IP, or on a unix socket from one uid (0: no limit).", s_defaults.MaxPerIp), 0, TcpForkServerOptions.MaxConnectionsLimit);

    private readonly Option<int?> _ipv6Prefix = OptionParsers.Whole("--ipv6-prefix",
        OptionParsers.WithDefault("Leading bits of an IPv6 client's address that --max-per-ip and --rate count it under (IPv4: per address).", s_defaults.Ipv6Prefix), 0, 128);

    private readonly Option<string?> _maxPerIpMessage = new("--max-per-ip-message")
    {
        Description = "Line sent to a client refused by --max-per-ip before it is closed.",
        HelpName = "TEXT",
    };

    private readonly Option<RateLimit?> _rate = new("--rate")
    {
        Description = "New connections allowed per IP (unix socket: per uid): N/SECONDS, e.g. 10/60. Over it a connection is logged and closed; the service stays up.",
        HelpName = "N/SECONDS",
        CustomParser = r => Parse(r, RateLimit.Parse, "--rate"),
    };

    // At least a millisecond: the timers count milliseconds, and a smaller value would round to 0.
    private readonly Option<double?> _idleTimeout = OptionParsers.Seconds("--idle-timeout", "End a child whose TCP connection moved no data either way for this long (TCP only: refused with a unix listener).", 0.001, 31_536_000);
    private readonly Option<double?> _maxLifetime = OptionParsers.Seconds("--max-lifetime", "End a child older than this.", 0.001, 31_536_000);
    private readonly Option<long?> _limitAs = OptionParsers.Count("--limit-as", "Each child's memory limit, bytes; K, M, G suffixes. For exec's PROGRAM: RLIMIT_AS. For tcpfork's own children: the GC heap's hard limit, and RLIMIT_AS = the child's size at start plus BYTES.", sizes: true);
    private readonly Option<long?> _limitCpu = OptionParsers.Count("--limit-cpu", "Each child's CPU time limit (RLIMIT_CPU), seconds.", sizes: false);
    private readonly Option<long?> _limitNofile = OptionParsers.Count("--limit-nofile", "Each child's open-file limit (RLIMIT_NOFILE).", sizes: false);
    private readonly Option<long?> _limitNproc = OptionParsers.Count("--limit-nproc", "RLIMIT_NPROC for each child: counts every process and thread of the user, the server included; not enforced for root.", sizes: false);
    private readonly Option<string?> _user = new("--user") { Description = "After binding, run as this user (and its group).", HelpName = "NAME" };
    private readonly Option<string?> _group = new("--group") { Description = "After binding, run with this group.", HelpName = "NAME" };

    private readonly Option<ListenAddress?> _metrics = new("--metrics")
    {
        Description = "Serve Prometheus metrics at http://HOST:PORT/metrics, each scrape answered by a child process (docs/metrics.md). Default off.",
        HelpName = "HOST:PORT",
        CustomParser = r =>
        {
            ListenAddress? a = Parse(r, ListenAddress.Parse, "--metrics");
            if (a?.UnixPath is not null)
            {
                r.AddError("--metrics must be HOST:PORT, not a unix socket");
            }
            return a;
        },
    };

    private readonly Option<bool> _reusePort = new("--reuse-port")
    {
        Description = "SO_REUSEPORT: several tcpfork instances (same user, each with --reuse-port) share the port; the kernel spreads connections among them.",
    };

    private readonly Option<bool> _upgrade = new("--upgrade")
    {
        Description = "SIGUSR2 re-executes the tcpfork binary at its path (replaced or not) with the same arguments and hands it the listeners; the old parent drains and exits (docs/upgrade.md).",
    };

    private readonly Option<bool> _dieWithParent = new("--die-with-parent")
    {
        Description = "Children get SIGKILL when the parent dies without a drain (killed, crashed); by default they finish their connections.",
    };

    private readonly Option<ProxyProtocol?> _proxyProtocol = OptionParsers.Choice<ProxyProtocol>("--proxy-protocol",
        OptionParsers.WithDefault("Each connection starts with a PROXY protocol header (HAProxy's send-proxy: v1, send-proxy-v2: v2, either: any); its client is the one judged, logged and passed on. Never guessed.", OptionParsers.LowerName(s_defaults.ProxyProtocol)));

    private readonly Option<string[]> _proxyFrom = new("--proxy-from")
    {
        Description = "With --proxy-protocol: only peers in this network (10.0.0.0/8, ::1) may send a header; others are closed unread and logged; repeatable. Default: any peer.",
        HelpName = "CIDR",
        Arity = ArgumentArity.OneOrMore,
        AllowMultipleArgumentsPerToken = false,
        CustomParser = r => CheckRules(r, "--proxy-from", allow: true),
    };

    private readonly Option<double?> _proxyTimeout = OptionParsers.Seconds("--proxy-timeout",
        OptionParsers.WithDefault("With --proxy-protocol: seconds from accept for the whole header to arrive, else the connection is logged and closed.", s_defaults.ProxyTimeout.TotalSeconds), 0.001, 3600);

    private readonly bool _exec;
    private readonly TlsOptionsBinder _tls = new();

    /// <param name="exec">
    /// For <c>tcpfork exec</c>: PROGRAM is spawned directly unless a tcpfork child must act before its
    /// exec (--limit-*, --die-with-parent), so --mode only says how that child is made.
    /// </param>
    public ServerOptionsBinder(bool exec = false)
    {
        _exec = exec;
        string auto = OptionParsers.LowerName(ProcessMode.Auto), fork = OptionParsers.LowerName(ProcessMode.Fork), spawn = OptionParsers.LowerName(ProcessMode.Spawn);
        _mode = OptionParsers.Choice<ProcessMode>("--mode", OptionParsers.WithDefault(exec
            ? $"How the tcpfork child that sets --limit-* or --die-with-parent, or ends --tls-cert's TLS, before exec'ing PROGRAM is made: {fork} (NativeAOT only), {spawn} (posix_spawn of tcpfork itself) or {auto}: {fork} when safe. Without those options PROGRAM is spawned directly and {fork} or {spawn} is refused."
            : $"{fork} (NativeAOT only), {spawn} (posix_spawn of tcpfork itself; works everywhere) or {auto}: {fork} when safe.", auto));
    }

    private readonly Option<bool> _verbose = new("--verbose", "-v") { Description = "Also log each connection's start and end (tcpserver's -v lines) and the echo children's progress." };
    private readonly Option<bool> _quiet = new("--quiet", "-q") { Description = "Log warnings and errors only." };

    private readonly Option<LogFormat?> _logFormat = OptionParsers.Choice<LogFormat>("--log-format",
        OptionParsers.WithDefault("Log lines as text or one JSON object a line (docs/logging.md).", OptionParsers.LowerName(s_defaults.LogFormat)));

    private readonly Option<bool> _logTimestamps = new("--log-timestamps") { Description = "Start each text log line with the time (RFC 3339, UTC); JSON lines always carry it." };

    public void AddTo(Command command)
    {
        command.Options.Add(_listen);
        command.Options.Add(_mode);
        command.Options.Add(_maxConnections);
        command.Options.Add(_backlog);
        command.Options.Add(_drainTimeout);
        command.Options.Add(_keepAlive);
        command.Options.Add(_reusePort);
        command.Options.Add(_metrics);
        command.Options.Add(_upgrade);
        foreach (Option o in new Option[] { _allow, _deny, _rules, _maxPerIp, _maxPerIpMessage, _ipv6Prefix, _rate, _idleTimeout, _maxLifetime, _limitAs, _limitCpu, _limitNofile, _limitNproc, _user, _group, _dieWithParent, _proxyProtocol, _proxyFrom, _proxyTimeout })
        {
            command.Options.Add(o);
        }
        command.Options.Add(_verbose);
        command.Options.Add(_quiet);
        command.Options.Add(_logFormat);
        command.Options.Add(_logTimestamps);
        _tls.AddTo(command);
        command.Validators.Add(r =>
        {
            if (r.GetValue(_verbose) && r.GetValue(_quiet))
            {
                r.AddError("--verbose and --quiet cannot be used together");
            }
            if (_exec && r.GetValue(_mode) is ProcessMode mode and not ProcessMode.Auto && !NeedsExecChild(r))
            {
                r.AddError($"--mode {OptionParsers.LowerName(mode)} applies to exec only with --limit-*, --die-with-parent or --tls-cert: without them PROGRAM is spawned directly");
            }
        });
    }

    private bool NeedsExecChild(CommandResult r) =>
        r.GetValue(_dieWithParent) || _tls.IsGiven(r) || new[] { _limitAs, _limitCpu, _limitNofile, _limitNproc }.Any(l => r.GetValue(l) is not null);

    /// <summary>The options given; every one not given keeps <see cref="TcpForkServerOptions"/>' default.</summary>
    public TcpForkServerOptions Bind(ParseResult r)
    {
        var o = new TcpForkServerOptions
        {
            LogLevel = r.GetValue(_quiet) ? LogLevel.Quiet : r.GetValue(_verbose) ? LogLevel.Verbose : LogLevel.Normal,
        };
        o.Mode = r.GetValue(_mode) ?? o.Mode;
        o.LogFormat = r.GetValue(_logFormat) ?? o.LogFormat;
        o.LogTimestamps = r.GetValue(_logTimestamps);
        o.MaxConnections = r.GetValue(_maxConnections) ?? o.MaxConnections;
        o.Backlog = r.GetValue(_backlog) ?? o.Backlog;
        o.DrainTimeout = r.GetValue(_drainTimeout) is double drain ? TimeSpan.FromSeconds(drain) : o.DrainTimeout;
        if (r.GetValue(_keepAlive) is { } keepAlive)
        {
            o.KeepAlive = keepAlive.On;
            if (keepAlive.On)
            {
                o.KeepAliveIdle = TimeSpan.FromSeconds(keepAlive.Idle);
                o.KeepAliveInterval = TimeSpan.FromSeconds(keepAlive.Interval);
                o.KeepAliveCount = keepAlive.Count;
            }
        }
        foreach (ListenAddress a in r.GetValue(_listen) ?? [])
        {
            o.Listen.Add(a);
        }
        // --allow and --deny in command-line order: the first rule that matches wins.
        IReadOnlyList<Token> tokens = r.Tokens;
        for (int i = 0; i + 1 < tokens.Count; i++)
        {
            if (tokens[i].Type == TokenType.Option && tokens[i].Value is "--allow" or "--deny")
            {
                o.Rules.Add(AccessRule.Create(tokens[i].Value == "--allow", tokens[i + 1].Value));
            }
        }
        o.RulesFile = r.GetValue(_rules);
        o.MaxPerIp = r.GetValue(_maxPerIp) ?? o.MaxPerIp;
        o.MaxPerIpMessage = r.GetValue(_maxPerIpMessage);
        o.Rate = r.GetValue(_rate);
        o.Ipv6Prefix = r.GetValue(_ipv6Prefix) ?? o.Ipv6Prefix;
        o.IdleTimeout = r.GetValue(_idleTimeout) is double idle ? TimeSpan.FromSeconds(idle) : null;
        o.MaxLifetime = r.GetValue(_maxLifetime) is double life ? TimeSpan.FromSeconds(life) : null;
        o.Limits.AddressSpace = r.GetValue(_limitAs);
        o.Limits.CpuSeconds = r.GetValue(_limitCpu);
        o.Limits.OpenFiles = r.GetValue(_limitNofile);
        o.Limits.Processes = r.GetValue(_limitNproc);
        o.User = r.GetValue(_user);
        o.Group = r.GetValue(_group);
        o.DieWithParent = r.GetValue(_dieWithParent);
        o.ReusePort = r.GetValue(_reusePort);
        o.ProxyProtocol = r.GetValue(_proxyProtocol) ?? o.ProxyProtocol;
        foreach (string cidr in r.GetValue(_proxyFrom) ?? [])
        {
            o.ProxyFrom.Add(AccessRule.Create(allow: true, cidr));
        }
        o.ProxyTimeout = r.GetValue(_proxyTimeout) is double proxyTimeout ? TimeSpan.FromSeconds(proxyTimeout) : o.ProxyTimeout;
        o.Metrics = r.GetValue(_metrics);
        o.Upgrade = r.GetValue(_upgrade);
        o.Tls = _tls.Bind(r);
        return o;
    }

    private static Option<string[]> Rule(string name, bool allow) => new(name)
    {
        Description = $"{(allow ? "Allow" : "Deny")} clients in this network (10.0.0.0/8, ::1), or unix-socket clients of these uids (uid:0, uid:1000-1999); repeatable; rules apply in order, first match wins, default allow.",
        HelpName = "CIDR",
        Arity = ArgumentArity.OneOrMore,
        AllowMultipleArgumentsPerToken = false,
        CustomParser = r => CheckRules(r, name, allow),
    };

    /// <summary>The option's values, each checked as an <see cref="AccessRule"/> (an error per bad one).</summary>
    private static string[] CheckRules(ArgumentResult r, string name, bool allow)
    {
        foreach (Token t in r.Tokens)
        {
            try
            {
                AccessRule.Create(allow, t.Value);
            }
            catch (FormatException e)
            {
                r.AddError($"{name} {e.Message}");
            }
        }
        return r.Tokens.Select(t => t.Value).ToArray();
    }

    private static T? Parse<T>(ArgumentResult r, Func<string, T> parse, string name)
        where T : class
    {
        try
        {
            return parse(r.Tokens[^1].Value);
        }
        catch (FormatException e)
        {
            r.AddError($"{name} {e.Message}");
            return null;
        }
    }

    private static ListenAddress[] ParseListen(ArgumentResult result)
    {
        var list = new List<ListenAddress>();
        foreach (Token t in result.Tokens)
        {
            try
            {
                list.Add(ListenAddress.Parse(t.Value));
            }
            catch (FormatException e)
            {
                result.AddError($"--listen {e.Message}");
            }
        }
        return [.. list];
    }

}

/// <summary><c>--keepalive IDLE,INTERVAL,COUNT</c> or <c>off</c>.</summary>
internal sealed record KeepAliveSetting(bool On, int Idle, int Interval, int Count)
{
    private static readonly TcpForkServerOptions s_defaults = new();

    /// <summary>The library's defaults as the option writes them: <c>60,15,4</c>.</summary>
    public static string DefaultText => s_defaults.KeepAlive
        ? $"{s_defaults.KeepAliveIdle.TotalSeconds},{s_defaults.KeepAliveInterval.TotalSeconds},{s_defaults.KeepAliveCount}" : "off";

    /// <summary>How long the defaults take to find a vanished client: idle plus count intervals.</summary>
    public static double DefaultMinutes => (s_defaults.KeepAliveIdle + (s_defaults.KeepAliveInterval * s_defaults.KeepAliveCount)).TotalMinutes;

    public static KeepAliveSetting? TryParse(string text)
    {
        if (text == "off")
        {
            return new KeepAliveSetting(false, 0, 0, 0);
        }
        string[] parts = text.Split(',');
        if (parts.Length != 3)
        {
            return null;
        }
        var numbers = new int[3];
        for (int i = 0; i < 3; i++)
        {
            if (!int.TryParse(parts[i], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out numbers[i]) || numbers[i] < 1 || numbers[i] > (i == 2 ? TcpForkServerOptions.KeepAliveCountLimit : TcpForkServerOptions.KeepAliveSecondsLimit))
            {
                return null;
            }
        }
        return new KeepAliveSetting(true, numbers[0], numbers[1], numbers[2]);
    }
}
