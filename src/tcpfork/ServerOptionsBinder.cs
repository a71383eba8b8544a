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

    private readonly Option<bool> _verbose = new("--verbose", "-v") { Description = "Also log each child's progress." };
    private readonly Option<bool> _quiet = new("--quiet", "-q") { Description = "Log errors only." };

    public void AddTo(Command command)
    {
        command.Options.Add(_listen);
        command.Options.Add(_mode);
        command.Options.Add(_maxConnections);
        command.Options.Add(_backlog);
        command.Options.Add(_drainTimeout);
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
            LogLevel = r.GetValue(_quiet) ? LogLevel.Quiet : r.GetValue(_verbose) ? LogLevel.Verbose : LogLevel.Normal,
        };
        foreach (ListenAddress a in r.GetValue(_listen) ?? [])
        {
            o.Listen.Add(a);
        }
        return o;
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
