using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;

namespace TcpFork.Tests;

/// <summary>
/// <c>--metrics HOST:PORT</c>: exact counters after known traffic, in each mode; scrapers that send
/// nothing or garbage cost one child with a timeout; the text passes <c>promtool check metrics</c>.
/// The real Prometheus is in <see cref="PrometheusTests"/>.
/// </summary>
public class MetricsTests
{
    /// <summary>The metrics port from the <c>metrics: serving /metrics on 127.0.0.1:PORT</c> line (text or JSON).</summary>
    internal static int MetricsPort(ServerProcess server) =>
        int.Parse(Regex.Match(server.WaitForLog("metrics: serving /metrics on |\"event\":\"metrics.listening\""), @":(\d+)(;|"")").Groups[1].Value, CultureInfo.InvariantCulture);

    /// <summary>GET /metrics; asserts 200 and the content type Prometheus expects.</summary>
    internal static async Task<string> ScrapeAsync(int port)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
        using HttpResponseMessage response = await http.GetAsync(new Uri($"http://127.0.0.1:{port}/metrics"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType?.ToString());
        return await response.Content.ReadAsStringAsync();
    }

    /// <summary>The value of the one sample named exactly <paramref name="series"/> (name and labels as written).</summary>
    internal static double Value(string text, string series)
    {
        string[] lines = text.Split('\n').Where(l => l.StartsWith(series + " ", StringComparison.Ordinal)).ToArray();
        Assert.True(lines.Length == 1, $"expected one sample {series}, found {lines.Length} in:\n{text}");
        return double.Parse(lines[0][(series.Length + 1)..], CultureInfo.InvariantCulture);
    }

    private static void AssertPromtoolAccepts(string text)
    {
        var psi = new ProcessStartInfo(Run.Which("promtool") ?? throw new InvalidOperationException("promtool is not installed (Debian: prometheus; .ci/run installs it)"), "check metrics")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using Process p = Process.Start(psi)!;
        Task<string> output = p.StandardOutput.ReadToEndAsync();
        Task<string> errors = p.StandardError.ReadToEndAsync();
        p.StandardInput.Write(text);
        p.StandardInput.Close();
        Assert.True(p.WaitForExit(TimeSpan.FromSeconds(30)), "promtool did not finish");
        Assert.True(p.ExitCode == 0, $"promtool check metrics: exit {p.ExitCode}\n{output.Result}{errors.Result}\n{text}");
        Assert.Equal("", output.Result + errors.Result); // not even a lint warning
    }

    /// <summary>A client from <paramref name="from"/> that the server refuses: it just reads the close.</summary>
    private static async Task RefusedFromAsync(int port, string from)
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        s.Bind(new IPEndPoint(IPAddress.Parse(from), 0));
        await s.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port));
        Assert.Empty(await EchoClient.DrainAsync(s));
    }

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    [InlineData(Flavor.JitSpawn)]
    public async Task Counters_are_exact_after_served_and_denied_connections(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--metrics", "127.0.0.1:0", "--deny", "127.0.0.2");
        int port = MetricsPort(server);
        string before = await ScrapeAsync(port);
        Assert.Equal(0, Value(before, "tcpfork_connections_total"));
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal("m"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "m"u8.ToArray()));
        }
        await RefusedFromAsync(server.Port, "127.0.0.2");
        await RefusedFromAsync(server.Port, "127.0.0.2");
        server.WaitForLogCount("^tcpfork: end ", 5);
        server.WaitForLogCount("^tcpfork: deny ", 2);

        string text = await ScrapeAsync(port);
        Assert.Equal(7, Value(text, "tcpfork_connections_total"));
        Assert.Equal(2, Value(text, "tcpfork_connections_denied_total{reason=\"rule\"}"));
        Assert.Equal(0, Value(text, "tcpfork_connections_denied_total{reason=\"max-per-ip\"}"));
        Assert.Equal(0, Value(text, "tcpfork_connections_active"));
        Assert.Equal(5, Value(text, "tcpfork_children_ended_total{class=\"exit0\"}"));
        Assert.Equal(0, Value(text, "tcpfork_children_ended_total{class=\"signal\"}"));
        Assert.Equal(5, Value(text, "tcpfork_child_lifetime_seconds_count"));
        Assert.Equal(5, Value(text, "tcpfork_child_lifetime_seconds_bucket{le=\"+Inf\"}"));
        string mode = flavor == Flavor.AotFork ? "fork" : "spawn";
        Assert.Equal(0, Value(text, $"tcpfork_launch_failures_total{{action=\"{mode}\"}}"));
        Assert.Matches($"(?m)^tcpfork_build_info{{version=\"[0-9.]+[^\"]*\",mode=\"{mode}\"}} 1$", text);
        double start = Value(text, "tcpfork_start_time_seconds");
        Assert.InRange(start, DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 600, DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 1);
        // Scrapes are no connections: the two made here are in no counter.
        Assert.Equal(7, Value(await ScrapeAsync(port), "tcpfork_connections_total"));
        AssertPromtoolAccepts(text);
    }

    /// <summary>
    /// --proxy-protocol: connections closed for their header (garbage, cut short, never sent, too late,
    /// from a peer outside --proxy-from) are neither denied nor launched; each is counted by its reason.
    /// </summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task Connections_closed_for_their_PROXY_header_are_counted_by_reason(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--metrics", "127.0.0.1:0", "--proxy-protocol", "v1", "--proxy-from", "127.0.0.1/32", "--proxy-timeout", "1");
        int port = MetricsPort(server);
        byte[] header = ProxyProtocolTests.V1("192.0.2.1", "192.0.2.2", 1, 2);
        for (int i = 0; i < 2; i++)
        {
            using Socket garbage = EchoClient.Connect(server.Port);
            await garbage.SendAsync("GET / HTTP/1.0\r\n\r\n"u8.ToArray());
            Assert.Empty(await EchoClient.DrainAsync(garbage));
        }
        using (Socket truncated = EchoClient.Connect(server.Port))
        {
            await truncated.SendAsync(header[..10]);
            truncated.Shutdown(SocketShutdown.Send);
            Assert.Empty(await EchoClient.DrainAsync(truncated));
        }
        using (Socket nothing = EchoClient.Connect(server.Port))
        {
            nothing.Shutdown(SocketShutdown.Send);
            Assert.Empty(await EchoClient.DrainAsync(nothing));
        }
        using (Socket silent = EchoClient.Connect(server.Port))
        {
            Assert.Empty(await EchoClient.DrainAsync(silent));
        }
        using (Socket stranger = ProxyProtocolTests.ConnectFrom("127.0.0.2", server.Port))
        {
            await stranger.SendAsync(header);
            Assert.Empty(await EchoClient.DrainAsync(stranger));
        }
        using (Socket good = EchoClient.Connect(server.Port))
        {
            await good.SendAsync(header);
            Assert.Equal("p"u8.ToArray(), await EchoClient.ExchangeAsync(good, "p"u8.ToArray()));
        }
        // Six closed: the second garbage one is counted, not written (RepeatedWarnings), and its count line
        // comes when the cause changes.
        server.WaitForLogCount("^tcpfork: warning: proxy header from ", 5);
        server.WaitForLog("^tcpfork: warning: proxy header: no PROXY v1 header; repeated 1 times in the last \\d+(\\.\\d)? s; the cause changed$");
        server.WaitForLogCount("^tcpfork: end ", 1);

        string text = await ScrapeAsync(port);
        Assert.Equal(7, Value(text, "tcpfork_connections_total"));
        Assert.Equal(2, Value(text, "tcpfork_proxy_header_failures_total{reason=\"invalid\"}"));
        Assert.Equal(2, Value(text, "tcpfork_proxy_header_failures_total{reason=\"eof\"}"));
        Assert.Equal(1, Value(text, "tcpfork_proxy_header_failures_total{reason=\"timeout\"}"));
        Assert.Equal(1, Value(text, "tcpfork_proxy_header_failures_total{reason=\"untrusted\"}"));
        Assert.Equal(0, Value(text, "tcpfork_proxy_header_failures_total{reason=\"stopping\"}"));
        Assert.Equal(0, Value(text, "tcpfork_proxy_header_failures_total{reason=\"error\"}"));
        Assert.Equal(0, Value(text, "tcpfork_connections_denied_total{reason=\"rule\"}"));
        Assert.Equal(1, Value(text, "tcpfork_children_ended_total{class=\"exit0\"}"));
        AssertPromtoolAccepts(text);
    }

    /// <summary>exec: a program that exits 0, one that exits 3, one killed by SIGKILL; counted by class and signal.</summary>
    [Fact]
    public async Task Children_ended_are_counted_by_exit_class_and_signal()
    {
        using ServerProcess server = ServerProcess.StartExec(Flavor.AotFork, ["--metrics", "127.0.0.1:0"],
            "sh", "-c", "read x; case $x in k*) kill -KILL $$;; n*) exit 3;; esac; echo done");
        int port = MetricsPort(server);
        foreach (string line in new[] { "z\n", "n\n", "k\n", "n\n" })
        {
            using Socket s = EchoClient.Connect(server.Port);
            await EchoClient.ExchangeAsync(s, Encoding.ASCII.GetBytes(line));
        }
        server.WaitForLogCount("^tcpfork: end ", 4);
        string text = await ScrapeAsync(port);
        Assert.Equal(4, Value(text, "tcpfork_connections_total"));
        Assert.Equal(1, Value(text, "tcpfork_children_ended_total{class=\"exit0\"}"));
        Assert.Equal(2, Value(text, "tcpfork_children_ended_total{class=\"exit_nonzero\"}"));
        Assert.Equal(1, Value(text, "tcpfork_children_ended_total{class=\"signal\"}"));
        Assert.Equal(1, Value(text, "tcpfork_children_signaled_total{signal=\"SIGKILL\"}"));
        Assert.Equal(0, Value(text, "tcpfork_children_signaled_total{signal=\"SIGTERM\"}"));
        Assert.Equal(0, Value(text, "tcpfork_launch_failures_total{action=\"exec\"}"));
        Assert.Matches("(?m)^tcpfork_build_info{version=\"[^\"]+\",mode=\"exec\"} 1$", text);
        AssertPromtoolAccepts(text);
    }

    /// <summary>
    /// A scraper that sends nothing holds one child for the request timeout (3 s), then is closed; garbage
    /// gets a 400; beyond 4 scrapes at once a scrape is closed at once. Meanwhile the parent serves
    /// connections and real scrapes, and every scrape child is reaped.
    /// </summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task Silent_and_garbage_scrapers_cost_one_child_each_until_a_timeout(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--metrics", "127.0.0.1:0");
        int port = MetricsPort(server);
        var silent = new List<Socket>();
        try
        {
            using (Socket garbage = EchoClient.Connect(port))
            {
                string answer = Encoding.ASCII.GetString(await EchoClient.ExchangeAsync(garbage, "\x01\x02 not http\r\n\r\n"u8.ToArray()));
                Assert.StartsWith("HTTP/1.1 400 Bad Request\r\n", answer);
            }
            Assert.Equal("x"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "x"u8.ToArray()));
            Assert.Equal(1, Value(await ScrapeAsync(port), "tcpfork_connections_total"));
            WaitForChildren(server, 0);

            // Four silent ones: four scrape children run; the fifth scrape is closed unanswered at once.
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < 4; i++)
            {
                silent.Add(EchoClient.Connect(port));
            }
            WaitForChildren(server, 4);
            int from = server.LogCount;
            using (Socket fifth = EchoClient.Connect(port))
            {
                var quick = Stopwatch.StartNew();
                Assert.Empty(await EchoClient.DrainAsync(fifth));
                Assert.True(quick.Elapsed < TimeSpan.FromSeconds(2), $"the fifth scrape waited {quick.Elapsed}");
            }
            server.WaitForLog("^tcpfork: metrics: 4 scrapes running; closed the scrape from 127.0.0.1:", from: from);
            Assert.Equal("y"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "y"u8.ToArray()));

            // Each silent scraper is closed after the timeout, unanswered.
            foreach (Socket s in silent)
            {
                Assert.Empty(await EchoClient.DrainAsync(s));
            }
            Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(2.9), $"closed after {clock.Elapsed}, before the 3 s timeout");
            server.WaitForLogCount("^tcpfork: metrics: scrape from 127.0.0.1:\\d+: no request within the timeout$", 4);
            server.WaitForLog("^tcpfork: metrics: scrape from 127.0.0.1:\\d+: 400 Bad Request$");
            WaitForChildren(server, 0);
            Assert.Equal(2, Value(await ScrapeAsync(port), "tcpfork_connections_total"));
        }
        finally
        {
            silent.ForEach(s => s.Dispose());
        }
    }

    /// <summary>Only GET (and HEAD) of /metrics is answered with the text; other paths and methods get their status and no body.</summary>
    [Fact]
    public async Task Only_get_and_head_of_metrics_are_served()
    {
        using ServerProcess server = ServerProcess.StartEcho(Flavor.AotFork, "--metrics", "127.0.0.1:0");
        int port = MetricsPort(server);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
        using (HttpResponseMessage r = await http.GetAsync(new Uri($"http://127.0.0.1:{port}/other")))
        {
            Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
        }
        using (HttpResponseMessage r = await http.SendAsync(new HttpRequestMessage(HttpMethod.Delete, new Uri($"http://127.0.0.1:{port}/metrics"))))
        {
            Assert.Equal(HttpStatusCode.MethodNotAllowed, r.StatusCode);
        }
        using (HttpResponseMessage r = await http.SendAsync(new HttpRequestMessage(HttpMethod.Head, new Uri($"http://127.0.0.1:{port}/metrics?x=1"))))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.True(r.Content.Headers.ContentLength > 1000, $"HEAD's Content-Length: {r.Content.Headers.ContentLength}");
            Assert.Empty(await r.Content.ReadAsByteArrayAsync());
        }
        server.WaitForLog("^tcpfork: metrics: scrape from 127.0.0.1:\\d+: 404 Not Found$");
        server.WaitForLog("^tcpfork: metrics: scrape from 127.0.0.1:\\d+: 405 Method Not Allowed$");
    }

    /// <summary>Waits (up to 20 s) until <paramref name="server"/> has exactly <paramref name="count"/> children, none a zombie left unreaped.</summary>
    private static void WaitForChildren(ServerProcess server, int count)
    {
        List<(int Pid, char State)> children = [];
        Poll.Until(() => (children = Native.Children(server.Pid)).Count == count && !children.Any(c => c.State == 'Z'),
            TimeSpan.FromSeconds(20), () => $"expected {count} live children, found {string.Join(", ", children)}");
    }

    /// <summary>
    /// System.Diagnostics.Metrics: a MeterListener in the server's own process (a JIT library program in
    /// spawn mode, whose collector thread reads the counters as the parent goes on) sees the meter
    /// TcpFork's counters, tags included, without --metrics.
    /// </summary>
    [Fact]
    public async Task The_meter_TcpFork_publishes_the_counters_to_a_MeterListener()
    {
        using ServerProcess server = ServerProcess.Start(Binaries.TestHost(Flavor.JitSpawn), ["meter", "spawn"]);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal("t"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "t"u8.ToArray()));
        }
        await RefusedFromAsync(server.Port, "127.0.0.2");
        server.WaitForLogCount("^tcpfork: end ", 3);
        server.WaitForLog("^tcpfork: deny ");
        server.WriteInput("collect");
        server.WaitForOutput("^meter tcpfork.connections 4$");
        server.WaitForOutput("^meter tcpfork.connections.denied reason=rule 1$");
        server.WaitForOutput("^meter tcpfork.children.ended class=exit0 3$");
        server.WaitForOutput("^meter tcpfork.connections.active 0$");
        server.WaitForOutput("^meter tcpfork.launch.failures 0$");
    }

    [Theory]
    [InlineData("127.0.0.1:80000")]
    [InlineData("unix:/tmp/metrics.sock")]
    public void A_bad_metrics_address_is_a_usage_error(string address)
    {
        (int code, _, string stderr) = Run.Command(Binaries.AotBinary, "echo", "--metrics", address);
        Assert.Equal(2, code);
        Assert.StartsWith("tcpfork: usage: --metrics ", stderr);
        Assert.Single(stderr.TrimEnd('\n').Split('\n'));
    }
}
