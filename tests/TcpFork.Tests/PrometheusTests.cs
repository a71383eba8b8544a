using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace TcpFork.Tests;

/// <summary>
/// A real Prometheus (Debian's <c>prometheus</c>; .ci/run installs it) scrapes tcpfork's <c>--metrics</c>
/// every second; after load through tcpfork its HTTP API returns the exact <c>tcpfork_connections_total</c>.
/// </summary>
public sealed class PrometheusTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tcpfork-prometheus-").FullName;
    private Process? _prometheus;

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task Prometheus_scrapes_the_exact_connection_count(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--metrics", "127.0.0.1:0");
        int metricsPort = MetricsTests.MetricsPort(server);
        int apiPort = SystemdTests.FreePort();
        string config = Path.Combine(_dir, "prometheus.yml");
        File.WriteAllText(config, $"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: tcpfork
                static_configs:
                  - targets: ['127.0.0.1:{metricsPort}']
            """);
        var psi = new ProcessStartInfo(Run.Which("prometheus") ?? throw new InvalidOperationException("prometheus is not installed (Debian: prometheus; .ci/run installs it)"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string a in new[] { $"--config.file={config}", $"--storage.tsdb.path={Path.Combine(_dir, "data")}", $"--web.listen-address=127.0.0.1:{apiPort}" })
        {
            psi.ArgumentList.Add(a);
        }
        _prometheus = Process.Start(psi)!;
        var log = new System.Collections.Concurrent.ConcurrentQueue<string>();
        _prometheus.ErrorDataReceived += (_, e) => log.Enqueue(e.Data ?? "");
        _prometheus.OutputDataReceived += (_, e) => log.Enqueue(e.Data ?? "");
        _prometheus.BeginErrorReadLine();
        _prometheus.BeginOutputReadLine();

        const int Connections = 40;
        await Task.WhenAll(Enumerable.Range(0, 4).Select(async _ =>
        {
            for (int i = 0; i < Connections / 4; i++)
            {
                Assert.Equal("p"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "p"u8.ToArray()));
            }
        }));

        // Up to 60 s (Prometheus starts, scrapes each second): the latest sample must be the exact count.
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        string last = "";
        // Polled: Prometheus scrapes on its own schedule (every 1 s here) and tells no one.
        await Poll.UntilAsync(async () =>
        {
            Assert.False(_prometheus.HasExited, $"prometheus exited {(_prometheus.HasExited ? _prometheus.ExitCode : 0)}:\n{string.Join('\n', log)}");
            try
            {
                last = await http.GetStringAsync(new Uri($"http://127.0.0.1:{apiPort}/api/v1/query?query=tcpfork_connections_total"));
                return SampleOf(last) == Connections;
            }
            catch (HttpRequestException)
            {
                return false; // not listening yet
            }
        }, TimeSpan.FromSeconds(60), () => $"Prometheus never returned tcpfork_connections_total {Connections}; last answer: {last}\n{string.Join('\n', log.TakeLast(20))}");
    }

    /// <summary>The value of the query's one series, or null while it has none.</summary>
    private static double? SampleOf(string json)
    {
        using var doc = JsonDocument.Parse(json);
        JsonElement result = doc.RootElement.GetProperty("data").GetProperty("result");
        return result.GetArrayLength() == 1
            ? double.Parse(result[0].GetProperty("value")[1].GetString()!, CultureInfo.InvariantCulture)
            : null;
    }

    public void Dispose()
    {
        if (_prometheus is { HasExited: false })
        {
            _prometheus.Kill();
            _prometheus.WaitForExit(10_000);
        }
        _prometheus?.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
