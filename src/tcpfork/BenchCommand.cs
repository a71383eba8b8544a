using System.CommandLine;
using TcpFork.Cli.Bench;

namespace TcpFork.Cli;

/// <summary><c>tcpfork bench HOST:PORT</c>: load an echo server and report what it sustained.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var target = new Argument<ListenAddress>("target")
        {
            Description = "The echo server: HOST:PORT, [IPV6]:PORT or unix:PATH.",
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
        var connections = new Option<long?>("--connections", "-n") { Description = "Total connections (default 3000 unless --duration is given).", HelpName = "N" };
        var duration = new Option<double?>("--duration", "-d") { Description = "Run for this many seconds instead (with --hold: how long to hold).", HelpName = "SECONDS" };
        var concurrency = new Option<int>("--concurrency", "-c") { Description = "Connections at once (client threads; with --hold, connections held). Default 4.", DefaultValueFactory = _ => 4, HelpName = "C" };
        var rounds = new Option<int>("--rounds", "-r") { Description = "Echo round trips per connection; the last one half-closes. Default 1.", DefaultValueFactory = _ => 1, HelpName = "R" };
        var size = new Option<int>("--size", "-s") { Description = "Bytes per round trip. Default 64.", DefaultValueFactory = _ => 64, HelpName = "BYTES" };
        var hold = new Option<bool>("--hold") { Description = "Open C connections, echo once on each, hold them for --duration (default 1 s), then close." };
        var bulk = new Option<long?>("--bulk") { Description = "Stream BYTES through one connection while reading them back.", HelpName = "BYTES" };
        var json = new Option<bool>("--json") { Description = "One JSON object on stdout instead of the report." };
        var timeout = new Option<double>("--timeout") { Description = "Seconds before a connect, read or write counts as a timeout. Default 10.", DefaultValueFactory = _ => 10, HelpName = "SECONDS" };

        var command = new Command("bench", "Load an echo server (tcpfork echo, or any other) and report conn/s, MiB/s and latency; every echoed byte is checked.")
        {
            target, connections, duration, concurrency, rounds, size, hold, bulk, json, timeout,
        };
        command.SetAction(parsed =>
        {
            static void Positive(string name, double? v)
            {
                if (v is double x && !(x > 0))
                {
                    throw new UsageException($"{name} must be above 0, not {x}");
                }
            }
            Positive("--connections", parsed.GetValue(connections));
            Positive("--duration", parsed.GetValue(duration));
            Positive("--concurrency", parsed.GetValue(concurrency));
            Positive("--rounds", parsed.GetValue(rounds));
            Positive("--size", parsed.GetValue(size));
            Positive("--bulk", parsed.GetValue(bulk));
            Positive("--timeout", parsed.GetValue(timeout));
            if (parsed.GetValue(connections) is not null && parsed.GetValue(duration) is not null && !parsed.GetValue(hold))
            {
                throw new UsageException("give --connections or --duration, not both");
            }
            if (parsed.GetValue(hold) && parsed.GetValue(bulk) is not null)
            {
                throw new UsageException("--hold and --bulk are different workloads: give one");
            }
            ListenAddress t = parsed.GetValue(target)!;
            SockAddr address;
            try
            {
                address = t.Resolve()[0];
            }
            catch (FormatException e)
            {
                throw new UsageException(e.Message, e);
            }
            long? n = parsed.GetValue(connections);
            double? d = parsed.GetValue(duration);
            bool holding = parsed.GetValue(hold);
            if (n is null && d is null && !holding && parsed.GetValue(bulk) is null)
            {
                n = 3000;
            }
            var settings = new BenchSettings(t.Text, address, n, d, parsed.GetValue(concurrency), parsed.GetValue(rounds), parsed.GetValue(size),
                holding, parsed.GetValue(bulk), parsed.GetValue(json), (int)(parsed.GetValue(timeout) * 1000));
            return BenchRunner.Run(settings, Reproduce(parsed));
        });
        return command;
    }

    private static string Reproduce(ParseResult parsed) =>
        "tcpfork " + string.Join(' ', parsed.Tokens.Select(t => t.Value.Contains(' ', StringComparison.Ordinal) ? $"'{t.Value}'" : t.Value));
}
