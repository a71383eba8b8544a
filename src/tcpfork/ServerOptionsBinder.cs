using System.CommandLine;
using System.CommandLine.Parsing;

namespace TcpFork.Cli;

/// <summary>The options every serving command shares: where to listen, limits, mode, logging.</summary>
internal sealed class ServerOptionsBinder
{
    private readonly Option<ListenAddress[]> _listen = new("--listen", "-l")
    {
        Description = "Address to listen on: HOST:PORT, [IPV6]:PORT or unix:PATH; repeatable. Default 127.0.0.1:0 (an ephemeral port).",
        HelpName = "HOST:PORT",
        Arity = ArgumentArity.OneOrMore,
        AllowMultipleArgumentsPerToken = false,
        CustomParser = ParseListen,
    };

    private readonly Option<ProcessMode> _mode = new("--mode")
    {
        Description = "fork (NativeAOT only), spawn (posix_spawn of tcpfork itself; works everywhere) or auto: fork when safe.",
        DefaultValueFactory = _ => ProcessMode.Auto,
    };

    private readonly Option<int> _maxConnections = Ranged("--max-connections", "Most connections served at once; beyond it clients wait in the backlog.", 1000, 1, 1_000_000);
    private readonly Option<int> _backlog = Ranged("--backlog", "listen(2) backlog.", 1024, 1, 65535);
    private readonly Option<double> _drainTimeout = new("--drain-timeout")
    {
        Description = "Seconds SIGTERM/SIGINT waits for connections to finish before terminating them. Default 10.",
        DefaultValueFactory = _ => 10,
        HelpName = "SECONDS",
        CustomParser = r =>
        {
            string text = r.Tokens.Count > 0 ? r.Tokens[^1].Value : "";
            if (!double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v) || !(v >= 0 && v <= 86400))
            {
                r.AddError($"--drain-timeout must be from 0 to 86400 seconds, not '{text}'");
            }
            return v;
        },
    };

    private readonly Option<KeepAliveSetting> _keepAlive = new("--keepalive")
    {
        Description = "TCP keepalive for accepted connections: IDLE,INTERVAL,COUNT (seconds, seconds, probes) or 'off'. Default 60,15,4: a vanished client is found after 2 minutes.",
        HelpName = "IDLE,INTERVAL,COUNT|off",
        DefaultValueFactory = _ => KeepAliveSetting.Default,
        CustomParser = r =>
        {
            string text = r.Tokens[^1].Value;
            if (KeepAliveSetting.TryParse(text) is { } setting)
            {
                return setting;
            }
            r.AddError($"--keepalive must be IDLE,INTERVAL,COUNT (seconds from 1 to 32767, seconds from 1 to 32767, 1 to 127 probes) or 'off', not '{text}'");
            return KeepAliveSetting.Default;
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

    private readonly Option<int> _maxPerIp = Ranged("--max-per-ip", "Most connections at once from one IP, or on a unix socket from one uid (0: no limit).", 0, 0, 1_000_000);

    private readonly Option<int> _ipv6Prefix = Ranged("--ipv6-prefix", "Leading bits of an IPv6 client's address that --max-per-ip and --rate count it under (IPv4: per address).", 64, 0, 128);

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

    private readonly Option<double?> _idleTimeout = Seconds("--idle-timeout", "End a child whose TCP connection moved no data either way for this long (TCP only: refused with a unix listener).");
    private readonly Option<double?> _maxLifetime = Seconds("--max-lifetime", "End a child older than this.");
    private readonly Option<long?> _limitAs = Limit("--limit-as", "Each child's memory limit, bytes; K, M, G suffixes. For exec's PROGRAM: RLIMIT_AS. For tcpfork's own children: the GC heap's hard limit, and RLIMIT_AS = the child's size at start plus BYTES.", sizes: true);
    private readonly Option<long?> _limitCpu = Limit("--limit-cpu", "Each child's CPU time limit (RLIMIT_CPU), seconds.", sizes: false);
    private readonly Option<long?> _limitNofile = Limit("--limit-nofile", "Each child's open-file limit (RLIMIT_NOFILE).", sizes: false);
    private readonly Option<long?> _limitNproc = Limit("--limit-nproc", "RLIMIT_NPROC for each child: counts every process and thread of the user, the server included; not enforced for root.", sizes: false);
    private readonly Option<string?> _user = new("--user") { Description = "After binding, run as this user (and its group).", HelpName = "NAME" };
    private readonly Option<string?> _group = new("--group") { Description = "After binding, run with this group.", HelpName = "NAME" };

    private readonly Option<bool> _dieWithParent = new("--die-with-parent")
    {
        Description = "Children get SIGKILL when the parent dies without a drain (killed, crashed); by default they finish their connections.",
    };

    private readonly Option<bool> _verbose = new("--verbose", "-v") { Description = "Also log each connection's start and end (tcpserver's -v lines) and the echo children's progress." };
    private readonly Option<bool> _quiet = new("--quiet", "-q") { Description = "Log warnings and errors only." };

    public void AddTo(Command command)
    {
        command.Options.Add(_listen);
        command.Options.Add(_mode);
        command.Options.Add(_maxConnections);
        command.Options.Add(_backlog);
        command.Options.Add(_drainTimeout);
        command.Options.Add(_keepAlive);
        foreach (Option o in new Option[] { _allow, _deny, _rules, _maxPerIp, _maxPerIpMessage, _ipv6Prefix, _rate, _idleTimeout, _maxLifetime, _limitAs, _limitCpu, _limitNofile, _limitNproc, _user, _group, _dieWithParent })
        {
            command.Options.Add(o);
        }
        command.Options.Add(_verbose);
        command.Options.Add(_quiet);
        command.Validators.Add(r =>
        {
            if (r.GetValue(_verbose) && r.GetValue(_quiet))
            {
                r.AddError("--verbose and --quiet cannot be used together");
            }
        });
    }

    public TcpForkServerOptions Bind(ParseResult r)
    {
        var o = new TcpForkServerOptions
        {
            Mode = r.GetValue(_mode),
            MaxConnections = r.GetValue(_maxConnections),
            Backlog = r.GetValue(_backlog),
            DrainTimeout = TimeSpan.FromSeconds(r.GetValue(_drainTimeout)),
            KeepAlive = r.GetValue(_keepAlive)!.On,
            KeepAliveIdle = TimeSpan.FromSeconds(r.GetValue(_keepAlive)!.Idle),
            KeepAliveInterval = TimeSpan.FromSeconds(r.GetValue(_keepAlive)!.Interval),
            KeepAliveCount = r.GetValue(_keepAlive)!.Count,
            LogLevel = r.GetValue(_quiet) ? LogLevel.Quiet : r.GetValue(_verbose) ? LogLevel.Verbose : LogLevel.Normal,
        };
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
        o.MaxPerIp = r.GetValue(_maxPerIp);
        o.MaxPerIpMessage = r.GetValue(_maxPerIpMessage);
        o.Rate = r.GetValue(_rate);
        o.Ipv6Prefix = r.GetValue(_ipv6Prefix);
        o.IdleTimeout = r.GetValue(_idleTimeout) is double idle ? TimeSpan.FromSeconds(idle) : null;
        o.MaxLifetime = r.GetValue(_maxLifetime) is double life ? TimeSpan.FromSeconds(life) : null;
        o.Limits.AddressSpace = r.GetValue(_limitAs);
        o.Limits.CpuSeconds = r.GetValue(_limitCpu);
        o.Limits.OpenFiles = r.GetValue(_limitNofile);
        o.Limits.Processes = r.GetValue(_limitNproc);
        o.User = r.GetValue(_user);
        o.Group = r.GetValue(_group);
        o.DieWithParent = r.GetValue(_dieWithParent);
        return o;
    }

    private static Option<string[]> Rule(string name, bool allow) => new(name)
    {
        Description = $"{(allow ? "Allow" : "Deny")} clients in this network (10.0.0.0/8, ::1), or unix-socket clients of these uids (uid:0, uid:1000-1999); repeatable; rules apply in order, first match wins, default allow.",
        HelpName = "CIDR",
        Arity = ArgumentArity.OneOrMore,
        AllowMultipleArgumentsPerToken = false,
        CustomParser = r =>
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
        },
    };

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

    private static Option<double?> Seconds(string name, string description) => new(name)
    {
        Description = description + " Seconds.",
        HelpName = "SECONDS",
        CustomParser = r =>
        {
            string text = r.Tokens[^1].Value;
            if (!double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double v) || !(v >= 0.001 && v <= 31_536_000))
            {
                // At least a millisecond: the timers count milliseconds, and a smaller value would round to 0.
                r.AddError($"{name} must be a number of seconds from 0.001 to 31536000, not '{Printable.Truncate(text)}'");
            }
            return v;
        },
    };

    private static Option<long?> Limit(string name, string description, bool sizes) => new(name)
    {
        Description = description,
        HelpName = sizes ? "BYTES" : "N",
        CustomParser = r =>
        {
            string text = r.Tokens[^1].Value;
            long scale = 1;
            string digits = text;
            if (sizes && text.Length > 0 && "KMG".Contains(char.ToUpperInvariant(text[^1]), StringComparison.Ordinal))
            {
                scale = char.ToUpperInvariant(text[^1]) switch { 'K' => 1L << 10, 'M' => 1L << 20, _ => 1L << 30 };
                digits = text[..^1];
            }
            if (!long.TryParse(digits, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long v) || v < 1 || v > long.MaxValue / scale)
            {
                r.AddError($"{name} must be a whole number of at least 1{(sizes ? " (K, M, G suffixes allowed)" : "")}, not '{text}'");
                return null;
            }
            return v * scale;
        },
    };

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

    private static Option<int> Ranged(string name, string description, int defaultValue, int min, int max) => new(name)
    {
        Description = $"{description} Default {defaultValue}.",
        DefaultValueFactory = _ => defaultValue,
        HelpName = "N",
        CustomParser = r =>
        {
            string text = r.Tokens.Count > 0 ? r.Tokens[^1].Value : "";
            if (!int.TryParse(text, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out int v) || v < min || v > max)
            {
                r.AddError($"{name} must be from {min} to {max}, not '{text}'");
            }
            return v;
        },
    };
}

/// <summary><c>--keepalive IDLE,INTERVAL,COUNT</c> or <c>off</c>.</summary>
internal sealed record KeepAliveSetting(bool On, int Idle, int Interval, int Count)
{
    public static readonly KeepAliveSetting Default = new(true, 60, 15, 4);

    public static KeepAliveSetting? TryParse(string text)
    {
        if (text == "off")
        {
            return Default with { On = false };
        }
        string[] parts = text.Split(',');
        if (parts.Length != 3)
        {
            return null;
        }
        var numbers = new int[3];
        for (int i = 0; i < 3; i++)
        {
            if (!int.TryParse(parts[i], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out numbers[i]) || numbers[i] < 1 || numbers[i] > (i == 2 ? 127 : 32767))
            {
                return null;
            }
        }
        return new KeepAliveSetting(true, numbers[0], numbers[1], numbers[2]);
    }
}
