using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;

namespace TcpFork.Tests;

/// <summary>
/// The conformance suite: one handler (tests/TcpFork.ConformanceHost), every behaviour a handler may rely
/// on, asserted the same way in fork mode (NativeAOT), in spawn mode of the same binary and in spawn mode
/// under the JIT — over many connections where a behaviour is about children being distinct. docs/library.md
/// has the table these rows produce.
/// </summary>
public sealed class ConformanceTests(ConformanceFixture fixture) : IClassFixture<ConformanceFixture>
{
    public static TheoryData<Flavor> Modes() => new(Flavor.AotFork, Flavor.AotSpawn, Flavor.JitSpawn);

    private async Task<string> Ok(Flavor flavor, string probe)
    {
        (string reply, _) = await fixture.Ask(flavor, probe);
        Assert.StartsWith("ok ", reply, StringComparison.Ordinal);
        return reply[3..];
    }

    private async Task<string[]> Many(Flavor flavor, string probe, int children)
    {
        var answers = new string[children];
        for (int i = 0; i < children; i++)
        {
            answers[i] = await Ok(flavor, probe);
        }
        return answers;
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Guid_NewGuid_is_a_valid_v4_and_new_in_every_child(Flavor flavor)
    {
        string[] guids = await Many(flavor, "guid", 20);
        Assert.Equal(guids.Length, guids.Distinct().Count());
        Assert.All(guids, g => Assert.Matches("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", g));
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task RandomNumberGenerator_gives_every_child_its_own_bytes(Flavor flavor)
    {
        string[] bytes = await Many(flavor, "rng", 20);
        Assert.Equal(bytes.Length, bytes.Distinct().Count());
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Random_and_Random_Shared_differ_across_100_children_after_Main_used_Random_Shared(Flavor flavor)
    {
        string[][] draws = (await Many(flavor, "random", 100)).Select(a => a.Split(' ')).ToArray();
        Assert.Equal(100, draws.Select(d => d[0]).Distinct().Count()); // new Random()
        Assert.Equal(100, draws.Select(d => d[1]).Distinct().Count()); // Random.Shared
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Environment_ProcessId_and_Process_GetCurrentProcess_are_the_childs_pid_after_Main_read_it(Flavor flavor)
    {
        ServerProcess server = fixture.Server(flavor);
        foreach (string answer in await Many(flavor, "pid", 5))
        {
            int[] ids = answer.Split(' ').Select(int.Parse).ToArray(); // Environment.ProcessId, Process…Id, getpid(), Main's
            Assert.Equal(ids[2], ids[0]);
            Assert.Equal(ids[2], ids[1]);
            Assert.NotEqual(server.Pid, ids[2]);
            // Main read it first: in the forked parent, or in the spawned child itself.
            Assert.Equal(flavor == Flavor.AotFork ? server.Pid : ids[2], ids[3]);
        }
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Console_Out_and_Error_reach_the_servers_stdout_and_stderr(Flavor flavor)
    {
        string marker = $"conformance-{flavor}-{Guid.NewGuid():N}";
        Assert.Equal(marker, await Ok(flavor, $"console {marker}"));
        ServerProcess server = fixture.Server(flavor);
        server.WaitForOutput($"^{marker} out$");
        server.WaitForLog($"^{marker} err$");
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Files_work_after_the_handler_opened_others_and_the_file_Main_opened_is_readable(Flavor flavor) =>
        Assert.Equal(ConformanceFixture.KeptFileText, await Ok(flavor, "files"));

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task A_thread_pool_burst_of_Parallel_For_and_100_Task_Run_completes(Flavor flavor) =>
        Assert.Equal("200", await Ok(flavor, "threadpool"));

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Async_await_with_Task_Delay_resumes(Flavor flavor) =>
        Assert.Equal("delayed", await Ok(flavor, "async"));

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task A_System_Threading_Timer_fires(Flavor flavor) =>
        Assert.Equal("fired", await Ok(flavor, "timer"));

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task HttpClient_gets_from_a_local_HTTP_server(Flavor flavor) =>
        Assert.Equal(ConformanceFixture.HttpBody, await Ok(flavor, $"http {fixture.HttpUrl}"));

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task SslStream_completes_a_client_handshake_with_openssl_s_server(Flavor flavor) =>
        Assert.Matches("^Tls1[23] CN=localhost$", await Ok(flavor, $"tls {fixture.TlsPort}"));

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Dns_resolves_localhost(Flavor flavor) =>
        Assert.Contains("127.0.0.1", (await Ok(flavor, "dns")).Split(','));

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Process_Start_runs_bin_echo_and_sees_it_exit(Flavor flavor) =>
        Assert.Equal("from a grandchild exit 0", await Ok(flavor, "process"));

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task A_finalizer_runs_after_a_collection(Flavor flavor) =>
        Assert.Equal("ran", await Ok(flavor, "finalizer"));

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task GC_WaitForPendingFinalizers_returns_every_time(Flavor flavor) =>
        Assert.Equal("returned", await Ok(flavor, "wait-finalizers"));

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task A_200_MB_allocation_burst_collects(Flavor flavor) =>
        Assert.Equal("200 MiB collected", await Ok(flavor, "allocate"));

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task An_unhandled_exception_on_a_background_thread_ends_the_child_with_SIGABRT(Flavor flavor)
    {
        ServerProcess server = fixture.Server(flavor);
        int from = server.LogCount;
        (string reply, int pid) = await fixture.Ask(flavor, "crash");
        Assert.Equal("", reply);
        server.WaitForLog($"^tcpfork: end {pid} signal SIGABRT$", from: from);
        server.WaitForLog("^Unhandled exception. System.InvalidOperationException: conformance crash$", from: from);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task PosixSignalRegistration_handles_SIGTERM_in_the_child(Flavor flavor)
    {
        ServerProcess server = fixture.Server(flavor);
        int from = server.LogCount;
        (string reply, int pid) = await fixture.Ask(flavor, "sigterm");
        Assert.Equal("ok handled", reply);
        server.WaitForLog($"^tcpfork: end {pid} status 0$", from: from);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Environment_Exit_is_the_childs_exit_status(Flavor flavor)
    {
        ServerProcess server = fixture.Server(flavor);
        int from = server.LogCount;
        (string reply, int pid) = await fixture.Ask(flavor, "exit 42");
        Assert.Equal("", reply);
        server.WaitForLog($"^tcpfork: end {pid} status 42$", from: from);
    }
}

/// <summary>
/// What the conformance rows share: one server per mode, the file Main keeps open, a local HTTP server
/// and an <c>openssl s_server</c> with a throwaway certificate. All of it ends with the class.
/// </summary>
public sealed partial class ConformanceFixture : IDisposable
{
    public const string KeptFileText = "made before Run()";
    public const string HttpBody = "hello from the test";

    private readonly string _dir = Directory.CreateTempSubdirectory("tcpfork-conformance").FullName;
    private readonly Dictionary<Flavor, ServerProcess> _servers = [];
    private readonly TcpListener _http = new(IPAddress.Loopback, 0);
    private readonly Thread _httpThread;
    private readonly Process _tls;

    public ConformanceFixture()
    {
        File.WriteAllText(Path.Combine(_dir, "kept"), KeptFileText);
        _http.Start();
        _httpThread = new Thread(ServeHttp) { IsBackground = true, Name = "conformance http" };
        _httpThread.Start();
        HttpUrl = $"http://127.0.0.1:{((IPEndPoint)_http.LocalEndpoint).Port}/";
        (_tls, TlsPort) = StartTlsServer();
    }

    public string HttpUrl { get; }

    public int TlsPort { get; }

    public ServerProcess Server(Flavor flavor)
    {
        lock (_servers)
        {
            if (!_servers.TryGetValue(flavor, out ServerProcess? server))
            {
                string mode = flavor == Flavor.AotFork ? "fork" : "spawn";
                _servers[flavor] = server = ServerProcess.Start(Binaries.ConformanceHost(flavor), [mode, Path.Combine(_dir, "kept")]);
                server.WaitForLog($"^tcpfork: start: pid {server.Pid} mode {mode} ");
            }
            return server;
        }
    }

    /// <summary>Runs one probe in a new child: its one-line answer ("" if it closed without one) and its pid.</summary>
    public async Task<(string Reply, int Pid)> Ask(Flavor flavor, string probe)
    {
        ServerProcess server = Server(flavor);
        using Socket s = EchoClient.Connect(server.Port);
        int clientPort = ((IPEndPoint)s.LocalEndPoint!).Port;
        byte[] reply = await EchoClient.ExchangeAsync(s, Encoding.UTF8.GetBytes(probe + "\n"));
        string pidLine = server.WaitForLog($@"^tcpfork: pid \d+ from 127\.0\.0\.1:{clientPort}$");
        int pid = int.Parse(PidOf().Match(pidLine).Groups[1].Value, CultureInfo.InvariantCulture);
        return (Encoding.UTF8.GetString(reply).TrimEnd('\n'), pid);
    }

    [GeneratedRegex(@"pid (\d+)")]
    private static partial Regex PidOf();

    /// <summary>A minimal HTTP/1.1 server: every request gets <see cref="HttpBody"/>, then the connection closes.</summary>
    private void ServeHttp()
    {
        byte[] response = Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {HttpBody.Length}\r\nConnection: close\r\n\r\n{HttpBody}");
        while (true)
        {
            Socket client;
            try
            {
                client = _http.AcceptSocket();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or InvalidOperationException)
            {
                return; // stopped
            }
            using (client)
            {
                client.ReceiveTimeout = 10_000;
                var request = new StringBuilder();
                byte[] buffer = new byte[4096];
                try
                {
                    while (!request.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
                    {
                        int n = client.Receive(buffer);
                        if (n == 0)
                        {
                            break;
                        }
                        request.Append(Encoding.ASCII.GetString(buffer, 0, n));
                    }
                    client.Send(response);
                }
                catch (SocketException)
                {
                    // that client went away; serve the next
                }
            }
        }
    }

    /// <summary>openssl s_server on a loopback port, with a self-signed certificate for CN=localhost made here.</summary>
    private (Process, int) StartTlsServer()
    {
        string openssl = Run.Which("openssl") ?? throw new InvalidOperationException("openssl is not installed (.ci/run installs it)");
        string key = Path.Combine(_dir, "key.pem"), cert = Path.Combine(_dir, "cert.pem");
        (int code, _, string err) = Run.Command(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-subj", "/CN=localhost", "-days", "1");
        Assert.True(code == 0, err);
        for (int attempt = 0; ; attempt++)
        {
            int port;
            using (var probe = new TcpListener(IPAddress.Loopback, 0))
            {
                probe.Start();
                port = ((IPEndPoint)probe.LocalEndpoint).Port;
            }
            var psi = new ProcessStartInfo(openssl) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
            foreach (string a in new[] { "s_server", "-accept", $"127.0.0.1:{port}", "-cert", cert, "-key", key, "-www" })
            {
                psi.ArgumentList.Add(a);
            }
            Process server = Process.Start(psi)!;
            // s_server says ACCEPT once it listens (after a line or two about its parameters); a port
            // taken in between makes it exit instead.
            Task<bool> listening = Task.Run(async () =>
            {
                string? line;
                while ((line = await server.StandardOutput.ReadLineAsync()) is not null && line != "ACCEPT")
                {
                }
                return line is not null;
            });
            if (listening.Wait(TimeSpan.FromSeconds(20)) && listening.Result)
            {
                server.StandardOutput.ReadToEndAsync(); // drained, never read
                server.StandardError.ReadToEndAsync(); // drained, never read
                return (server, port);
            }
            server.Kill();
            server.WaitForExit();
            server.Dispose();
            Assert.True(attempt < 3, "openssl s_server did not start");
        }
    }

    public void Dispose()
    {
        foreach (ServerProcess server in _servers.Values)
        {
            server.Dispose();
        }
        _http.Stop();
        _httpThread.Join(TimeSpan.FromSeconds(10));
        _tls.Kill();
        _tls.WaitForExit();
        _tls.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}
