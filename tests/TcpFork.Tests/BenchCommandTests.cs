using System.Text.Json;

namespace TcpFork.Tests;

/// <summary><c>tcpfork bench</c> against a real tcpfork echo: it counts, verifies and reports.</summary>
public class BenchCommandTests
{
    private static JsonElement Bench(params string[] args)
    {
        (int code, string stdout, string stderr) = Run.Command(TimeSpan.FromMinutes(2), Binaries.AotBinary, ["bench", .. args, "--json"]);
        JsonElement result = JsonDocument.Parse(stdout).RootElement;
        Assert.True(code == (result.GetProperty("failed").GetInt64() == 0 ? 0 : 1), stderr);
        return result;
    }

    [Fact]
    public void Rate_hold_and_bulk_workloads_all_verify_and_report()
    {
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "-q");
        string target = $"127.0.0.1:{server.Port}";

        JsonElement rate = Bench(target, "-n", "300", "-c", "4", "-r", "3", "-s", "1000");
        Assert.Equal(300, rate.GetProperty("ok").GetInt64());
        Assert.Equal(0, rate.GetProperty("failed").GetInt64());
        Assert.True(rate.GetProperty("conn_per_s").GetDouble() > 0);
        JsonElement latency = rate.GetProperty("latency_ms");
        Assert.True(latency.GetProperty("p50").GetDouble() <= latency.GetProperty("p99").GetDouble());
        Assert.True(latency.GetProperty("p99").GetDouble() <= latency.GetProperty("max").GetDouble());
        Assert.StartsWith("tcpfork bench 127.0.0.1:", rate.GetProperty("reproduce").GetString());

        JsonElement hold = Bench(target, "--hold", "-c", "100", "-d", "0.5");
        Assert.Equal(100, hold.GetProperty("ok").GetInt64()); // each echoed once, held, then closed cleanly
        Assert.Equal(0, hold.GetProperty("failed").GetInt64());

        JsonElement bulk = Bench(target, "--bulk", "33554432");
        Assert.Equal(1, bulk.GetProperty("ok").GetInt64());
        Assert.True(bulk.GetProperty("mib_per_s").GetDouble() > 0);

        // Each workload reports its own fields, nothing that does not apply to it.
        Assert.Equal(["target", "workload", "connections", "concurrency", "size", "rounds", "ok", "failed", "failures", "seconds", "conn_per_s", "mib_per_s", "latency_ms", "reproduce"],
            rate.EnumerateObject().Select(p => p.Name));
        Assert.Equal(["target", "workload", "concurrency", "size", "hold_seconds", "ok", "failed", "failures", "seconds", "latency_ms", "reproduce"],
            hold.EnumerateObject().Select(p => p.Name));
        Assert.Equal(["target", "workload", "bytes", "ok", "failed", "failures", "seconds", "mib_per_s", "reproduce"],
            bulk.EnumerateObject().Select(p => p.Name));
        Assert.Equal(33554432, bulk.GetProperty("bytes").GetInt64());
    }

    [Fact]
    public void Bulk_reports_MiB_per_second_and_no_connection_rate_or_percentiles_of_one_sample()
    {
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "-q");
        (int code, string stdout, string stderr) = Run.Command(TimeSpan.FromMinutes(1), Binaries.AotBinary, "bench", $"127.0.0.1:{server.Port}", "--bulk", "16M");
        Assert.True(code == 0, stderr);
        Assert.Matches(@"^  [0-9]+\.[0-9]{2} MiB/s   in [0-9.]+ s$", stdout.Split('\n')[2]);
        Assert.DoesNotContain("conn/s", stdout);
        Assert.DoesNotContain("p50", stdout);
        Assert.Contains("16777216 bytes through one connection", stdout);
    }

    [SkippableFact]
    public void The_progress_display_on_a_terminal_shows_a_live_rate()
    {
        Skip.If(Run.Which("script") is null, "script(1) (util-linux) runs the bench on a pseudo-terminal");
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "-q");
        // script(1) gives the bench a terminal, where the progress display runs; 1 GiB takes well over the 100 ms between updates.
        string command = $"TERM=xterm COLUMNS=120 {Binaries.AotBinary} bench 127.0.0.1:{server.Port} --bulk 1G";
        (int code, string stdout, string stderr) = Run.Command(TimeSpan.FromMinutes(2), "script", "-qec", command, "/dev/null");
        Assert.True(code == 0, stderr + stdout);
        Assert.Matches(@"bulk 127\.0\.0\.1:[0-9]+ +[0-9]+\.[0-9] MiB/s", stdout);
        Assert.Contains("1073741824 bytes through one connection", stdout);
    }

    [Fact]
    public void Bulk_sends_by_reference_through_a_unix_socket_too_and_still_checks_every_byte()
    {
        string path = Path.Combine(Path.GetTempPath(), $"tcpfork-bulk-{Environment.ProcessId}.sock");
        using (ServerProcess server = ServerProcess.StartUnixEcho(Flavor.AotFork, path, "-q"))
        {
            JsonElement bulk = Bench("unix:" + path, "--bulk", "8388608");
            Assert.Equal(1, bulk.GetProperty("ok").GetInt64());
            Assert.Equal(0, bulk.GetProperty("failed").GetInt64());
        }

        // A server that changes one byte value of the stream: the vmspliced pattern comes back different.
        using ServerProcess wrong = ServerProcess.StartExec(Flavor.AotFork, ["-q"], "tr", "\\000", "\\001");
        JsonElement mismatch = Bench($"127.0.0.1:{wrong.Port}", "--bulk", "1048576");
        Assert.Equal(1, mismatch.GetProperty("failures").GetProperty("mismatch").GetInt64());
    }

    [Fact]
    public void Failures_are_counted_by_kind()
    {
        // Bound but not listening: connections are refused, and no other test's server can be given this port meanwhile.
        using var bound = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        bound.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        int port = ((System.Net.IPEndPoint)bound.LocalEndPoint!).Port;
        JsonElement refused = Bench($"127.0.0.1:{port}", "-n", "20", "-c", "2");
        Assert.Equal(20, refused.GetProperty("failures").GetProperty("refused").GetInt64());

        // A server that answers with the wrong bytes: as many as it was sent, all zeros.
        using ServerProcess wrong = ServerProcess.StartExec(Flavor.AotFork, ["-q"], "sh", "-c", "head -c 64 | tr '\\000-\\377' '\\000'");
        JsonElement mismatch = Bench($"127.0.0.1:{wrong.Port}", "-n", "10", "-c", "1");
        Assert.Equal(10, mismatch.GetProperty("failures").GetProperty("mismatch").GetInt64());
    }

    [Theory]
    [InlineData("--bulk 1M -c 8", "--concurrency does not apply to --bulk (one connection)")]
    [InlineData("--bulk 1M -s 100", "--size does not apply to --bulk (one connection)")]
    [InlineData("--bulk 1M -n 5", "--connections does not apply to --bulk (one connection)")]
    [InlineData("--hold -r 3", "--rounds does not apply to --hold")]
    [InlineData("--tls --bulk 1M --tls-resume", "--tls-resume does not apply to --bulk (one connection)")]
    [InlineData("--tls-resume -n 5", "--tls-resume needs --tls")]
    public void An_option_the_workload_would_ignore_is_refused(string args, string reason)
    {
        (int code, string stdout, string stderr) = Run.Command(Binaries.AotBinary, ["bench", "127.0.0.1:1", .. args.Split(' ')]);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        Assert.Equal($"tcpfork: usage: {reason} (see 'tcpfork --help')", stderr.TrimEnd('\n'));
    }

    [Fact]
    public void Bad_bench_input_is_a_usage_error()
    {
        (int code, _, string stderr) = Run.Command(Binaries.AotBinary, "bench", "127.0.0.1:1", "--concurrency", "0");
        Assert.Equal(2, code);
        Assert.Contains("--concurrency must be from 1 to 100000, not '0'", stderr);
    }
}
