using System.Text.Json;
using Xunit.Abstractions;

namespace TcpFork.Tests;

/// <summary>
/// docs/deployment.md, tested: three tcpfork instances behind one real HAProxy (round robin, v2 PROXY
/// headers, LOCAL health checks, retries and redispatch — the configuration the doc shows), the bench
/// client loading them through HAProxy while one instance is stopped with SIGTERM and drains. No client
/// connection fails, every echoed byte is checked (bench), HAProxy marks the stopped server DOWN and the
/// other two carry the load on. Stopped the way the doc recommends (drained in HAProxy first) HAProxy
/// counts no error and no retry for it; stopped with SIGTERM alone, the connections HAProxy sent it
/// between the stop and its health check noticing are refused and redispatched (counted in wredis,
/// written to the test output), still without a client seeing it.
/// </summary>
public class DeploymentTests(ITestOutputHelper output)
{
    private static readonly string[] s_servers = ["s1", "s2", "s3"];

    /// <summary>docs/deployment.md's haproxy.cfg, its defaults and backend sections (the test adds the frontend and the stats socket).</summary>
    internal static readonly string[] Defaults = ["retries 3", "option redispatch 1", "timeout check 500ms"];
    internal static readonly string[] Backend = ["balance roundrobin"];
    internal const string ServerOptions = "check inter 100 send-proxy-v2 check-send-proxy";

    /// <summary>docs/deployment.md shows the configuration this test runs: its defaults, backend and server lines.</summary>
    [Fact]
    public void The_docs_haproxy_cfg_is_the_one_tested()
    {
        string page = File.ReadAllText(Path.Combine(Binaries.RepoRoot, "docs", "deployment.md"));
        int start = page.IndexOf("```\nglobal\n", StringComparison.Ordinal);
        Assert.True(start >= 0, "docs/deployment.md has no haproxy.cfg block");
        string[] lines = [.. page[(start + 4)..page.IndexOf("```", start + 4, StringComparison.Ordinal)].Split('\n').Select(l => l.Trim())];
        Assert.All(Defaults.Concat(Backend), line => Assert.Contains(line, lines));
        Assert.Equal(3, lines.Count(l => l.StartsWith("server s", StringComparison.Ordinal) && l.EndsWith(" " + ServerOptions, StringComparison.Ordinal)));
        Assert.Contains("mode tcp", lines);
        Assert.Contains(lines, l => l.StartsWith("stats socket ", StringComparison.Ordinal) && l.EndsWith(" level admin", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(Flavor.AotFork, true)]
    [InlineData(Flavor.AotFork, false)]
    [InlineData(Flavor.AotSpawn, true)]
    [InlineData(Flavor.AotSpawn, false)]
    public async Task An_instance_stopped_under_load_behind_haproxy_fails_no_client(Flavor flavor, bool drainInHaProxyFirst)
    {
        ServerProcess[] instances = new ServerProcess[3];
        try
        {
            for (int i = 0; i < instances.Length; i++)
            {
                instances[i] = ServerProcess.StartEcho(flavor, "--proxy-protocol", "v2", "--proxy-from", "127.0.0.1/32");
            }
            using HaProxy haproxy = HaProxy.Start([.. s_servers.Select((name, i) => new HaProxy.Server(name, instances[i].Ports[0], ServerOptions))], Defaults, Backend);
            foreach (string name in s_servers)
            {
                haproxy.WaitForServer(name, r => r["status"] == "UP" && r["check_status"] == "L4OK", "up");
            }
            haproxy.Command("clear counters all");

            Task<(int Code, string Stdout, string Stderr)> bench = Task.Run(() =>
                Run.Command(TimeSpan.FromMinutes(2), Binaries.AotBinary, "bench", $"127.0.0.1:{haproxy.Front}", "--duration", "8", "-c", "4", "--json"));

            // Under load: the instance to stop has served a good number of clients through HAProxy.
            ServerProcess stopped = instances[1];
            stopped.WaitForLogCount("^tcpfork: ok \\d+ :127\\.0\\.0\\.1:\\d+ :127\\.0\\.0\\.1::\\d+$", 100, TimeSpan.FromSeconds(30));
            Assert.False(bench.IsCompleted, "the bench ended before the stop");
            if (drainInHaProxyFirst)
            {
                Assert.Equal("", haproxy.Command("set server be/s2 state drain").Trim());
                haproxy.WaitForServer("s2", r => r["status"] == "DRAIN" && HaProxy.Number(r, "scur") == 0, "drained");
            }
            stopped.Signal(Native.SIGTERM);
            Assert.Equal(0, stopped.WaitForExit(TimeSpan.FromSeconds(30)));
            stopped.WaitForLog("^tcpfork: exit: \\d+ connections; \\d+ drained, 0 terminated, 0 killed$");
            haproxy.WaitForLog("Server be/s2 is DOWN");
            long othersAtDown = s_servers.Where(s => s != "s2").Sum(s => HaProxy.Number(haproxy.Stats()["be/" + s], "stot"));

            (int code, string stdout, string stderr) = await bench;
            Assert.True(code == 0, $"bench exited {code}: {stderr}\n{haproxy.Log}");
            JsonElement result = JsonDocument.Parse(stdout).RootElement;
            Dictionary<string, Dictionary<string, string>> stats = haproxy.Stats();
            Dictionary<string, string> down = stats["be/s2"];
            output.WriteLine($"{flavor}, {(drainInHaProxyFirst ? "drained in HAProxy, then SIGTERM" : "SIGTERM alone")}: bench ok {result.GetProperty("ok")} failed {result.GetProperty("failed")} {result.GetProperty("failures")} latency ms {result.GetProperty("latency_ms")}");
            foreach (string name in s_servers)
            {
                Dictionary<string, string> r = stats["be/" + name];
                output.WriteLine($"  {name}: status {r["status"]} stot {r["stot"]} econ {r["econ"]} eresp {r["eresp"]} wretr {r["wretr"]} wredis {r["wredis"]} chkfail {r["chkfail"]} chkdown {r["chkdown"]} check {r["check_status"]}");
            }

            // No client saw an error, and every one was served through HAProxy.
            Assert.Equal(0, result.GetProperty("failed").GetInt64());
            Assert.True(result.GetProperty("ok").GetInt64() > 0);
            Assert.Equal(result.GetProperty("ok").GetInt64(), HaProxy.Number(stats["fe/FRONTEND"], "stot"));
            // The stopped instance is DOWN by its health checks (refused), and HAProxy counted no connect or response error.
            Assert.StartsWith("DOWN", down["status"], StringComparison.Ordinal);
            // ("* L4CON" while a check is running: HAProxy marks the last result with "* " then.)
            Assert.Equal("L4CON", down["check_status"].TrimStart('*', ' '));
            Assert.Equal(0, HaProxy.Number(down, "econ"));
            Assert.Equal(0, HaProxy.Number(down, "eresp"));
            Assert.Equal(0, HaProxy.Number(stats["be/BACKEND"], "econ") + HaProxy.Number(stats["be/BACKEND"], "eresp"));
            if (drainInHaProxyFirst)
            {
                // Drained first: HAProxy sent it nothing after the drain, so nothing had to be retried.
                Assert.Equal(0, HaProxy.Number(down, "wretr") + HaProxy.Number(down, "wredis"));
            }
            // The other two served clients before and after the stop, and stayed up.
            foreach (string name in s_servers.Where(s => s != "s2"))
            {
                Assert.Equal("UP", stats["be/" + name]["status"]);
                Assert.True(HaProxy.Number(stats["be/" + name], "stot") > 0, name + " served no client");
            }
            Assert.True(s_servers.Where(s => s != "s2").Sum(s => HaProxy.Number(stats["be/" + s], "stot")) > othersAtDown, "no client was served after the stop");
        }
        finally
        {
            foreach (ServerProcess? instance in instances)
            {
                instance?.Dispose();
            }
        }
    }
}
