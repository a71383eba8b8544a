using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace TcpFork.Tests;

/// <summary>
/// A real HAProxy in the foreground (master-worker, so it says "Loading success." once its listener is
/// bound), TCP mode: one frontend on a free port, one backend with the given servers, and a stats socket
/// at admin level — <see cref="Command"/> speaks HAProxy's runtime API over it, <see cref="Stats"/> reads
/// <c>show stat</c>. The frontend port is picked free (bind 0, close); taken in between, the start is
/// tried again. Dispose ends HAProxy and its worker, and removes its directory.
/// </summary>
public sealed class HaProxy : IDisposable
{
    private readonly ServerProcess _process;
    private readonly string _dir;

    private HaProxy(ServerProcess process, string dir, int front, string config)
    {
        _process = process;
        _dir = dir;
        Front = front;
        Config = config;
    }

    /// <summary>The frontend's port on 127.0.0.1.</summary>
    public int Front { get; }

    /// <summary>The configuration it runs (the stats socket path in it is this instance's).</summary>
    public string Config { get; }

    /// <summary>HAProxy's own log (its notices and warnings: servers going up and down).</summary>
    public string Log => _process.Stderr;

    /// <summary>Waits for a line of HAProxy's log (e.g. <c>Server be/s2 is DOWN</c>).</summary>
    public string WaitForLog(string pattern, TimeSpan? timeout = null) => _process.WaitForLog(pattern, timeout);

    private string StatsSocket => Path.Combine(_dir, "stats");

    /// <summary>One backend server: tcpfork on 127.0.0.1:Port, with HAProxy server Options (send-proxy-v2, check, …).</summary>
    public readonly record struct Server(string Name, int Port, string Options);

    /// <summary>One server named <c>tcpfork</c>: tcpfork on <paramref name="serverPort"/> with <paramref name="options"/>.</summary>
    public static HaProxy Start(int serverPort, string options) => Start([new Server("tcpfork", serverPort, options)]);

    /// <summary>
    /// The backend <c>be</c> with <paramref name="servers"/>; <paramref name="defaults"/> are added to the
    /// defaults section (retries, timeouts, …), <paramref name="backend"/> to the backend (balance, …).
    /// </summary>
    public static HaProxy Start(IReadOnlyList<Server> servers, string[]? defaults = null, string[]? backend = null)
    {
        string dir = Directory.CreateTempSubdirectory("tcpfork-haproxy-").FullName;
        for (int attempt = 1; ; attempt++)
        {
            int front = SystemdTests.FreePort();
            string config = Configuration(front, Path.Combine(dir, "stats"), servers, defaults ?? [], backend ?? []);
            string file = Path.Combine(dir, "haproxy.cfg");
            File.WriteAllText(file, config);
            ServerProcess haproxy = ServerProcess.Start(Binary, ["-W", "-db", "-f", file], listeners: 0);
            try
            {
                haproxy.WaitForLog("Loading success\\.");
                return new HaProxy(haproxy, dir, front, config);
            }
            catch (TimeoutException) when (attempt < 3 && haproxy.Stderr.Contains("cannot bind", StringComparison.OrdinalIgnoreCase))
            {
                haproxy.Dispose();
            }
            catch
            {
                haproxy.Dispose();
                Directory.Delete(dir, recursive: true);
                throw;
            }
        }
    }

    private static string Configuration(int front, string stats, IReadOnlyList<Server> servers, string[] defaults, string[] backend)
    {
        var b = new StringBuilder();
        b.Append(CultureInfo.InvariantCulture, $"""
            global
              maxconn 1000
              stats socket {stats} mode 600 level admin
            defaults
              mode tcp
              timeout connect 5s
              timeout client 30s
              timeout server 30s

            """);
        foreach (string line in defaults)
        {
            b.Append("  ").Append(line).Append('\n');
        }
        b.Append(CultureInfo.InvariantCulture, $"""
            frontend fe
              bind 127.0.0.1:{front}
              default_backend be
            backend be

            """);
        foreach (string line in backend)
        {
            b.Append("  ").Append(line).Append('\n');
        }
        foreach (Server s in servers)
        {
            b.Append(CultureInfo.InvariantCulture, $"  server {s.Name} 127.0.0.1:{s.Port} {s.Options}\n");
        }
        return b.ToString();
    }

    /// <summary>One runtime API command over the stats socket (e.g. <c>set server be/s2 state drain</c>); its answer.</summary>
    public string Command(string command)
    {
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.ReceiveTimeout = 5000;
        s.SendTimeout = 5000;
        s.Connect(new UnixDomainSocketEndPoint(StatsSocket));
        s.Send(Encoding.ASCII.GetBytes(command + "\n"));
        // One command per connection: HAProxy answers and closes.
        var answer = new MemoryStream();
        byte[] buffer = new byte[8192];
        int n;
        while ((n = s.Receive(buffer)) > 0)
        {
            answer.Write(buffer, 0, n);
        }
        return Encoding.ASCII.GetString(answer.ToArray());
    }

    /// <summary>
    /// <c>show stat</c>: one row per proxy and server, keyed by <c>pxname/svname</c> (<c>be/s1</c>,
    /// <c>be/BACKEND</c>, <c>fe/FRONTEND</c>), each a map from the CSV's field names (status, stot, econ, …).
    /// </summary>
    public Dictionary<string, Dictionary<string, string>> Stats()
    {
        string[] lines = Command("show stat").Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length > 0 && lines[0].StartsWith("# ", StringComparison.Ordinal), "show stat: " + string.Join('\n', lines));
        string[] names = lines[0][2..].Split(',');
        var rows = new Dictionary<string, Dictionary<string, string>>();
        foreach (string line in lines.Skip(1))
        {
            string[] values = line.Split(',');
            var row = new Dictionary<string, string>();
            for (int i = 0; i < names.Length && i < values.Length; i++)
            {
                row[names[i]] = values[i];
            }
            rows[row["pxname"] + "/" + row["svname"]] = row;
        }
        return rows;
    }

    /// <summary>A numeric field of <c>show stat</c> (an empty one counts as 0).</summary>
    public static long Number(Dictionary<string, string> row, string field) =>
        row[field] is { Length: > 0 } v ? long.Parse(v, CultureInfo.InvariantCulture) : 0;

    /// <summary>Until <paramref name="condition"/> holds for <paramref name="server"/>'s row of <c>show stat</c>, within <paramref name="seconds"/>; returns that row.</summary>
    public Dictionary<string, string> WaitForServer(string server, Func<Dictionary<string, string>, bool> condition, string what, double seconds = 20)
    {
        // Polled: HAProxy's log says when a server goes down (WaitForLog), not when its sessions end.
        Dictionary<string, string> row = Stats()["be/" + server];
        Poll.Until(() => condition(row = Stats()["be/" + server]), TimeSpan.FromSeconds(seconds),
            () => $"HAProxy's {server} not {what} within {seconds} s: status {row["status"]}, scur {row["scur"]}; log:\n{Log}");
        return row;
    }

    private static string Binary =>
        new[] { "/usr/sbin/haproxy", "/usr/local/sbin/haproxy" }.FirstOrDefault(File.Exists)
        ?? throw new InvalidOperationException("haproxy is not installed (.ci/run installs it: apt-get install haproxy)");

    public void Dispose()
    {
        _process.Dispose();
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
            // best effort: a temp directory
        }
    }
}
