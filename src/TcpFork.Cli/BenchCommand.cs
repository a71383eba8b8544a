using System.CommandLine;
using TcpFork.Cli.Bench;

namespace TcpFork.Cli;

/// <summary><c>tcpfork bench HOST:PORT</c>: load an echo server and report what it sustained.</summary>
internal static class BenchCommand
{
    private const long DefaultConnections = 3000;
    private const int DefaultConcurrency = 4, DefaultRounds = 1, DefaultSize = 64, DefaultTimeoutSeconds = 10;

    public static Command Create()
    {
        var target = new Argument<ListenAddress>("target")
        {
            Description = "The echo server to load: HOST:PORT, [IPV6]:PORT or unix:PATH.",
            HelpName = "HOST:PORT",
            CustomParser = r =>
            {
                try
                {
                    return ListenAddress.Parse(r.Tokens[^1].Value);
                }
                catch (FormatException e)
                {
                    r.AddError($"target {e.Message}");
                    return null;
                }
            },
        };
        var connections = OptionParsers.Count("--connections", $"Total connections (default {DefaultConnections} unless --duration is given).", sizes: false, "-n");
        var duration = OptionParsers.Seconds("--duration", "Run for this many seconds instead (with --hold: how long to hold; default 1).", 0.001, 31_536_000, "-d");
        var concurrency = OptionParsers.Whole("--concurrency", OptionParsers.WithDefault("Connections at once (client threads; with --hold, connections held).", DefaultConcurrency), 1, 100_000, "C", "-c");
        var rounds = OptionParsers.Whole("--rounds", OptionParsers.WithDefault("Echo round trips per connection; the last one half-closes.", DefaultRounds), 1, 1_000_000, "R", "-r");
        var size = OptionParsers.Whole("--size", OptionParsers.WithDefault("Bytes per round trip.", DefaultSize), 1, 64 << 20, "BYTES", "-s");
        var hold = new Option<bool>("--hold") { Description = "Open C connections, echo once on each, hold them for --duration, then close." };
        var bulk = OptionParsers.Count("--bulk", "Stream BYTES through one connection while reading them back; K, M, G suffixes.", sizes: true);
        var tls = new Option<bool>("--tls") { Description = "Over TLS (rate: each connection a full handshake, so conn/s is handshakes/s; bulk). The server's certificate is not verified." };
        var tlsResume = new Option<bool>("--tls-resume") { Description = "With --tls, rate: allow session resumption (a connection may resume the session the client cached from an earlier one), so conn/s is mostly resumed handshakes/s." };
        var json = new Option<bool>("--json") { Description = "One JSON object on stdout instead of the report." };
        var timeout = OptionParsers.Seconds("--timeout", OptionParsers.WithDefault("Seconds before a connect, read or write counts as a timeout.", DefaultTimeoutSeconds), 0.001, 86400);

        var command = new Command("bench", "Load an echo server (tcpfork echo, or any other) and report conn/s, MiB/s and latency; every echoed byte is checked.")
        {
            target, connections, duration, concurrency, rounds, size, hold, bulk, tls, tlsResume, json, timeout,
        };
        command.SetAction(parsed =>
        {
            if (parsed.GetValue(connections) is not null && parsed.GetValue(duration) is not null && !parsed.GetValue(hold))
            {
                throw new UsageException("give --connections or --duration, not both");
            }
            if (parsed.GetValue(hold) && parsed.GetValue(tls))
            {
                throw new UsageException("--tls applies to the rate and --bulk workloads, not --hold");
            }
            if (parsed.GetValue(tlsResume) && !parsed.GetValue(tls))
            {
                throw new UsageException("--tls-resume needs --tls");
            }
            if (parsed.GetValue(hold) && parsed.GetValue(bulk) is not null)
            {
                throw new UsageException("--hold and --bulk are different workloads: give one");
            }
            // A workload's report says what it measured; an option it would ignore is refused, not dropped silently.
            (string Workload, Option[] Unused)? mismatch = parsed.GetValue(bulk) is not null ? ("--bulk (one connection)", [connections, duration, concurrency, rounds, size, tlsResume])
                : parsed.GetValue(hold) ? ("--hold", [connections, rounds]) : null;
            if (mismatch is { } m && m.Unused.FirstOrDefault(o => parsed.GetResult(o) is { Implicit: false }) is { } unused)
            {
                throw new UsageException($"{unused.Name} does not apply to {m.Workload}");
            }
            ListenAddress t = parsed.GetValue(target)!;
            SockAddr address;
            try
            {
                address = t.Resolve()[0];
            }
            catch (FormatException e)
            {
                // The library's message names the option it resolves for (TcpForkServerOptions.Listen); bench has its target instead.
                throw new UsageException(e.Message.Replace("TcpForkServerOptions.Listen", "target", StringComparison.Ordinal), e);
            }
            long? n = parsed.GetValue(connections);
            double? d = parsed.GetValue(duration);
            bool holding = parsed.GetValue(hold);
            if (n is null && d is null && !holding && parsed.GetValue(bulk) is null)
            {
                n = DefaultConnections;
            }
            var settings = new BenchSettings(t.Text, address, n, d, parsed.GetValue(concurrency) ?? DefaultConcurrency, parsed.GetValue(rounds) ?? DefaultRounds,
                parsed.GetValue(size) ?? DefaultSize, holding, parsed.GetValue(bulk), parsed.GetValue(json), (int)Math.Ceiling((parsed.GetValue(timeout) ?? DefaultTimeoutSeconds) * 1000),
                parsed.GetValue(tls), parsed.GetValue(tlsResume));
            return BenchRunner.Run(settings, Reproduce(parsed));
        });
        return command;
    }

    private static string Reproduce(ParseResult parsed) =>
        "tcpfork " + string.Join(' ', parsed.Tokens.Select(t => t.Value.Contains(' ', StringComparison.Ordinal) ? $"'{t.Value}'" : t.Value));
}
