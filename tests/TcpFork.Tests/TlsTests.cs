using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Text;
using System.Text.RegularExpressions;

namespace TcpFork.Tests;

/// <summary>
/// TLS per connection (issue 13): real clients (openssl s_client, .NET's SslStream) against tcpfork's
/// echo and a library handler, fork and spawn side by side; mutual TLS, rotation by SIGHUP, and every
/// kind of bad input a child must log and survive.
/// </summary>
public sealed class TlsTests(TlsFiles files) : IClassFixture<TlsFiles>
{
    public static TheoryData<Flavor> Modes() => new(Flavor.AotFork, Flavor.AotSpawn);

    public static TheoryData<Flavor, string> ModesAndVersions() => new()
    {
        { Flavor.AotFork, "1.2" }, { Flavor.AotFork, "1.3" }, { Flavor.AotSpawn, "1.2" }, { Flavor.AotSpawn, "1.3" }, { Flavor.JitSpawn, "1.3" },
    };

    [Theory]
    [MemberData(nameof(ModesAndVersions))]
    public void Openssl_s_client_gets_its_bytes_back_with_the_version_and_ALPN_it_asked_for(Flavor flavor, string version)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, files.ServerArgs("--tls-alpn", "h2,http/1.1"));
        (int code, string stdout) = SClient("hello over tls\n", "-connect", $"127.0.0.1:{server.Port}", "-servername", "localhost", "-CAfile", files.Pem("ca"),
            "-verify_return_error", "-alpn", "http/1.1", version == "1.2" ? "-tls1_2" : "-tls1_3");
        Assert.True(code == 0, stdout);
        Assert.Contains("hello over tls\n", stdout, StringComparison.Ordinal);
        Assert.Contains($"New, TLSv{version}, Cipher is ", stdout, StringComparison.Ordinal);
        Assert.Contains("ALPN protocol: http/1.1", stdout, StringComparison.Ordinal);
        Assert.Contains("Verify return code: 0 (ok)", stdout, StringComparison.Ordinal);
        server.WaitForLog($@"^tcpfork: tls: \d+: Tls1{version[^1]} \S+ alpn http/1\.1 client - session new$");
        server.WaitForLog(@"^tcpfork: end \d+ status 0$");
    }

    /// <summary>
    /// openssl s_client sending <paramref name="line"/>: its stdin is closed (so it sends close_notify and
    /// exits) only once the echo is in its output, since at stdin's EOF it stops reading. Returns its exit
    /// code and its whole output.
    /// </summary>
    internal static (int Code, string Stdout) SClient(string line, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("openssl") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("s_client");
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        using var p = System.Diagnostics.Process.Start(psi)!;
        var output = new StringBuilder();
        using var echoed = new ManualResetEventSlim();
        p.OutputDataReceived += (_, e) =>
        {
            lock (output)
            {
                output.Append(e.Data).Append('\n');
                if (e.Data == line.TrimEnd('\n'))
                {
                    echoed.Set();
                }
            }
        };
        p.BeginOutputReadLine();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        p.StandardInput.Write(line);
        p.StandardInput.Flush();
        bool seen = echoed.Wait(TimeSpan.FromSeconds(20));
        p.StandardInput.Close();
        if (!p.WaitForExit(TimeSpan.FromSeconds(20)))
        {
            p.Kill();
            p.WaitForExit();
            Assert.Fail($"openssl s_client did not exit; echoed: {seen}; stderr: {stderr.Result}");
        }
        p.WaitForExit();
        lock (output)
        {
            return (p.ExitCode, output + stderr.Result);
        }
    }

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    [InlineData(Flavor.JitSpawn)]
    public async Task A_library_handler_reads_the_protocol_cipher_ALPN_and_client_certificate(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.Start(Binaries.TestHost(flavor),
            ["tls-info", flavor == Flavor.AotFork ? "fork" : "spawn", files.Pem("server"), files.Key("server"), files.Pem("ca")]);
        Assert.Matches(@"^one tls True Tls13 TLS_AES_\w+ h2 CN=alice$", await LineAsync(server.Port, "one", "alice", ["h2"], SslProtocols.Tls13));
        Assert.Matches(@"^two tls True Tls12 TLS_ECDHE_ECDSA_\w+ http/1\.1 -$", await LineAsync(server.Port, "two", null, ["http/1.1"], SslProtocols.Tls12));
        server.WaitForLogCount(@"^tcpfork: end \d+ status 0$", 2);
    }

    private async Task<string> LineAsync(int port, string line, string? client, string[] alpn, SslProtocols protocols)
    {
        using SslStream tls = await files.ConnectAsync(port, client, protocols, alpn);
        await tls.WriteAsync(Encoding.UTF8.GetBytes(line + "\n"));
        using var reader = new StreamReader(tls);
        using var cts = new CancellationTokenSource(EchoClient.Timeout);
        return await reader.ReadLineAsync(cts.Token) ?? "";
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Mutual_TLS_serves_a_client_of_the_CA_and_refuses_the_others_with_the_reason(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, files.ServerArgs("--tls-client-ca", files.Pem("ca")));
        Assert.True(await EchoesAsync(server.Port, "alice"));
        server.WaitForLog(@"^tcpfork: tls: \d+: Tls13 \S+ alpn - client CN=alice session (new|resumed)$");
        foreach ((string? client, string reason) in new (string?, string)[]
        {
            ("old", "client certificate: expired or not yet valid"),
            ("mallory", "client certificate: not issued by the client CA"),
            (null, "client certificate: none presented"),
        })
        {
            int from = server.LogCount;
            Assert.False(await EchoesAsync(server.Port, client), $"{client ?? "no certificate"} was served");
            server.WaitForLog($@"^tcpfork: tls: \d+: handshake failed: {reason}$", from: from);
            server.WaitForLog(@"^tcpfork: end \d+ status 1$", from: from);
        }
        Assert.True(await EchoesAsync(server.Port, "alice"), "the server did not serve on");
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Optional_client_certificates_serve_a_client_without_one_and_still_refuse_a_bad_one(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, files.ServerArgs("--tls-client-ca", files.Pem("ca"), "--tls-client-cert", "optional"));
        Assert.True(await EchoesAsync(server.Port, null));
        Assert.True(await EchoesAsync(server.Port, "alice"));
        Assert.False(await EchoesAsync(server.Port, "mallory"));
        server.WaitForLog(@"^tcpfork: tls: \d+: handshake failed: client certificate: not issued by the client CA$");
    }

    /// <summary>A TLS round trip with a client certificate; false when the server refused it (during or just after the handshake).</summary>
    private async Task<bool> EchoesAsync(int port, string? client)
    {
        byte[] data = Encoding.ASCII.GetBytes("ping " + (client ?? "anonymous"));
        try
        {
            using SslStream tls = await files.ConnectAsync(port, client);
            return (await TlsFiles.RoundTripAsync(tls, data)).SequenceEqual(data);
        }
        catch (Exception e) when (e is AuthenticationException or IOException)
        {
            return false;
        }
    }

    /// <summary>The echo of <paramref name="data"/>, the session kept open.</summary>
    private static async Task<byte[]> ExchangeAsync(SslStream tls, byte[] data)
    {
        using var cts = new CancellationTokenSource(EchoClient.Timeout);
        await tls.WriteAsync(data, cts.Token);
        byte[] back = new byte[data.Length];
        await tls.ReadExactlyAsync(back, cts.Token);
        return back;
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Bad_input_is_logged_with_its_reason_the_child_exits_and_the_server_serves_on(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, files.ServerArgs("--tls-handshake-timeout", "1"));
        byte[] helloHeader = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]; // a ClientHello record that announces 512 bytes
        var cases = new (string Name, Func<Socket, Task> Act, string Reason)[]
        {
            ("plaintext", s => SendThenCloseAsync(s, "GET / HTTP/1.0\r\n\r\n"u8.ToArray()), @"not a TLS client \(first byte 0x47 'G': plaintext\?\)"),
            ("truncated", s => SendThenCloseAsync(s, helloHeader), "the client closed the connection before the handshake completed|unexpected eof.*"),
            ("silent", _ => Task.CompletedTask, @"timed out after 1 s"),
            ("stalled mid-handshake", s => s.SendAsync(helloHeader), @"timed out after 1 s"),
        };
        foreach ((string name, Func<Socket, Task> act, string reason) in cases)
        {
            int from = server.LogCount;
            using Socket s = EchoClient.Connect(server.Port);
            await act(s);
            server.WaitForLog($@"^tcpfork: tls: \d+: handshake failed: (?:{reason})$", TimeSpan.FromSeconds(10), from);
            server.WaitForLog(@"^tcpfork: end \d+ status 1$", from: from);
            Assert.True(await EchoesAsync(server.Port, null), $"not served after the {name} client");
        }
    }

    private static async Task SendThenCloseAsync(Socket s, byte[] data)
    {
        await s.SendAsync(data);
        s.Shutdown(SocketShutdown.Send);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Sighup_rotates_the_certificate_for_new_clients_while_a_connected_one_goes_on(Flavor flavor)
    {
        (string cert, string key) = files.RotatableCopy($"rotate-{flavor}");
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--tls-cert", cert, "--tls-key", key);
        using SslStream before = await files.ConnectAsync(server.Port);
        Assert.Equal("CN=localhost", before.RemoteCertificate!.Subject);
        Assert.Equal("a"u8.ToArray(), await ExchangeAsync(before, "a"u8.ToArray()));

        files.Rotate(cert, key);
        int from = server.LogCount;
        server.Signal(Native.SIGHUP);
        server.WaitForLog(@"^tcpfork: tls: reloaded certificate CN=rotated\.localhost expires \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", from: from);
        using (SslStream after = await files.ConnectAsync(server.Port))
        {
            Assert.Equal("CN=rotated.localhost", after.RemoteCertificate!.Subject);
            Assert.Equal("b"u8.ToArray(), await TlsFiles.RoundTripAsync(after, "b"u8.ToArray()));
        }
        Assert.Equal("c"u8.ToArray(), await ExchangeAsync(before, "c"u8.ToArray())); // the session from before goes on

        File.WriteAllText(cert, "not a certificate\n");
        from = server.LogCount;
        server.Signal(Native.SIGHUP);
        server.WaitForLog($@"^tcpfork: warning: tls: certificate file '{Regex.Escape(cert)}': holds no PEM certificate; keeping the certificate in force$", from: from);
        using SslStream kept = await files.ConnectAsync(server.Port);
        Assert.Equal("CN=rotated.localhost", kept.RemoteCertificate!.Subject);
    }

    /// <summary>
    /// A SIGHUP (which also asks for the stats line) re-reads the TLS files only when one changed: not when
    /// none did (the parent allocates nothing then: ParentInvariantTests), but when one is rewritten with the
    /// same bytes (its change time moves) or another file is renamed over it.
    /// </summary>
    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Sighup_rereads_the_tls_files_only_when_one_changed(Flavor flavor)
    {
        (string cert, string key) = files.RotatableCopy($"stamps-{flavor}");
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--tls-cert", cert, "--tls-key", key);
        const string Reloaded = @"^tcpfork: tls: reloaded certificate ";
        void Sighup(string? reloaded)
        {
            int from = server.LogCount;
            server.Signal(Native.SIGHUP);
            server.WaitForLog("^tcpfork: stats: ", from: from);
            string[] lines = server.StderrLines[from..];
            if (reloaded is null)
            {
                Assert.DoesNotContain(lines, l => Regex.IsMatch(l, Reloaded));
            }
            else
            {
                Assert.Single(lines, l => Regex.IsMatch(l, Reloaded + Regex.Escape(reloaded) + " "));
            }
        }

        Sighup(reloaded: null);
        Sighup(reloaded: null);
        File.WriteAllBytes(key, File.ReadAllBytes(key)); // the same bytes: only the times change
        Sighup(reloaded: "CN=localhost");
        Sighup(reloaded: null);
        File.Copy(files.Pem("server2"), cert + ".new");
        File.Copy(files.Key("server2"), key + ".new");
        File.Move(cert + ".new", cert, overwrite: true);
        File.Move(key + ".new", key, overwrite: true);
        Sighup(reloaded: "CN=rotated.localhost");
        Sighup(reloaded: null);
        using SslStream after = await files.ConnectAsync(server.Port);
        Assert.Equal("CN=rotated.localhost", after.RemoteCertificate!.Subject);
    }

    public static TheoryData<string, string> BadStarts() => new()
    {
        { "--tls-cert {dir}/missing.pem --tls-key {key}", "--tls-cert '{dir}/missing.pem': no such file" },
        { "--tls-cert {cert} --tls-key {dir}/missing.key", "--tls-key '{dir}/missing.key': no such file" },
        { "--tls-cert {key} --tls-key {key}", "--tls-cert '{key}': holds no PEM certificate" },
        { "--tls-cert {cert} --tls-key {dir}/alice.key", "--tls-key '{dir}/alice.key': holds no unencrypted PEM private key (PKCS#8, RSA or EC) matching the certificate" },
        { "--tls-cert {cert} --tls-key {key} --tls-client-ca {key}", "--tls-client-ca '{key}': holds no PEM certificate" },
        { "--tls-cert {cert}", "--tls-cert needs --tls-key" },
        { "--tls-alpn h2", "--tls-alpn needs --tls-cert and --tls-key" },
        { "--tls-cert {cert} --tls-key {key} --tls-client-cert optional", "--tls-client-cert needs --tls-client-ca" },
        { "--tls-cert {cert} --tls-key {key} --tls-min-version 1.1", "--tls-min-version must be 1.2 or 1.3, not '1.1'" },
        { "--tls-cert {cert} --tls-key {key} --tls-alpn h2,,x", "--tls-alpn must be protocol names of 1 to 255 bytes separated by commas, not 'h2,,x'" },
        { "--tls-cert {cert} --tls-key {key} --tls-handshake-timeout 0", "--tls-handshake-timeout must be a number of seconds from 0.001 to 3600, not '0'" },
    };

    [Theory]
    [MemberData(nameof(BadStarts))]
    public void Bad_tls_options_or_files_exit_2_with_one_plain_line(string args, string message)
    {
        string Fill(string s) => s.Replace("{dir}", files.Dir, StringComparison.Ordinal).Replace("{cert}", files.Pem("server"), StringComparison.Ordinal)
            .Replace("{key}", files.Key("server"), StringComparison.Ordinal);
        (int code, string stdout, string stderr) = Run.Command(Binaries.AotBinary, ["echo", .. Fill(args).Split(' ')]);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        string[] lines = stderr.TrimEnd('\n').Split('\n');
        Assert.Single(lines);
        Assert.Contains(Fill(message), lines[0], StringComparison.Ordinal);
    }

    [SkippableTheory]
    [MemberData(nameof(Modes))]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task A_key_only_root_can_read_serves_under_user_nobody(Flavor flavor)
    {
        Skip.IfNot(Environment.UserName == "root", "--user needs root to switch users");
        string dir = Path.Combine(files.Dir, $"root-only-{flavor}");
        Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string key = Path.Combine(dir, "key.pem");
        File.Copy(files.Key("server"), key, overwrite: true);
        File.SetUnixFileMode(key, UnixFileMode.UserRead);
        using ServerProcess server = ServerProcess.StartEcho(flavor, "--user", "nobody", "--tls-cert", files.Pem("server"), "--tls-key", key);
        Assert.True(await EchoesAsync(server.Port, null));
        Assert.True(await EchoesAsync(server.Port, null));
        Assert.Equal("65534", Native.StatusField(server.Pid, "Uid").Split('\t')[0]);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Forty_children_handshake_at_once_with_the_credentials_the_parent_loaded(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, files.ServerArgs());
        bool[] served = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => EchoesAsync(server.Port, null)));
        Assert.All(served, Assert.True);
        server.WaitForLogCount(@"^tcpfork: end \d+ status 0$", 40);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void Curl_fetches_50_MB_from_busybox_httpd_through_exec_over_TLS(Flavor flavor)
    {
        string www = Path.Combine(files.Dir, $"www-{flavor}");
        Directory.CreateDirectory(www);
        string big = Path.Combine(www, "big.bin");
        byte[] data = new byte[50 * 1000 * 1000];
        Random.Shared.NextBytes(data);
        File.WriteAllBytes(big, data);
        using ServerProcess server = ServerProcess.StartExec(flavor, files.ServerArgs(), "busybox", "httpd", "-i", "-h", www);
        string got = Path.Combine(files.Dir, $"got-{flavor}.bin");
        (int code, _, string stderr) = Run.Command(TimeSpan.FromSeconds(60), "curl", "-sS", "--fail", "--cacert", files.Pem("ca"),
            "--resolve", $"localhost:{server.Port}:127.0.0.1", "-o", got, $"https://localhost:{server.Port}/big.bin");
        Assert.True(code == 0, stderr);
        Assert.Equal(Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(data)),
            Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(got))));
        server.WaitForLog(@"^tcpfork: end \d+ status 0$");
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task An_exec_program_gets_the_UCSPI_TLS_variables_and_each_direction_closes_on_its_own(Flavor flavor)
    {
        string later = Path.Combine(files.Dir, $"later-{flavor}.txt");
        using ServerProcess server = ServerProcess.StartExec(flavor, files.ServerArgs("--tls-client-ca", files.Pem("ca")), "sh", "-c",
            "echo \"$SSL_PROTOCOL|$SSL_CIPHER|$SSL_CLIENT_S_DN|$SSL_CLIENT_I_DN|$SSL_TLS_SNI_SERVERNAME|$TCPREMOTEIP|$PROTO\"; exec >&-; cat > " + later);
        using SslStream tls = await files.ConnectAsync(server.Port, "alice", SslProtocols.Tls13);
        using var cts = new CancellationTokenSource(EchoClient.Timeout);
        // The program closes its output first: the client reads its line, then close_notify and EOF ...
        var back = new MemoryStream();
        await tls.CopyToAsync(back, cts.Token);
        Assert.Matches(@"^TLSv1\.3\|TLS_AES_\w+\|CN=alice\|CN=tcpfork test CA\|localhost\|127\.0\.0\.1\|TCP\n$", Encoding.UTF8.GetString(back.ToArray()));
        // ... and can still send: the program reads it until the client's close_notify.
        await tls.WriteAsync("sent after the server's close\n"u8.ToArray(), cts.Token);
        await tls.ShutdownAsync();
        server.WaitForLog(@"^tcpfork: end \d+ status 0$");
        Assert.Equal("sent after the server's close\n", File.ReadAllText(later));
    }

    /// <summary>
    /// --limit-* reach a program behind TLS exactly as they reach it without (soft and hard, every
    /// resource: /proc/self/limits whole), while the relay child that starts it keeps the parent's own:
    /// a .NET process under the program's RLIMIT_AS or RLIMIT_NOFILE would break.
    /// </summary>
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    [InlineData(Flavor.JitSpawn)]
    public async Task A_program_behind_TLS_gets_the_limits_it_gets_without_TLS_and_the_relay_keeps_its_own(Flavor flavor)
    {
        // Not --limit-as under the JIT build: its child may map memory between setrlimit and exec (README, known gap).
        bool jit = flavor == Flavor.JitSpawn;
        string[] limits = ["--limit-nofile", "17", "--limit-cpu", "7", "--limit-nproc", "4000", .. jit ? Array.Empty<string>() : ["--limit-as", "200M"]];
        const string Script = "cat /proc/$$/limits; echo relay; cat /proc/$PPID/limits";
        string plain;
        using (ServerProcess server = ServerProcess.StartExec(flavor, limits, "sh", "-c", Script))
        {
            using Socket s = EchoClient.Connect(server.Port);
            plain = Encoding.UTF8.GetString(await EchoClient.ExchangeAsync(s, ReadOnlyMemory<byte>.Empty));
        }
        using (ServerProcess server = ServerProcess.StartExec(flavor, files.ServerArgs(limits), "sh", "-c", Script))
        {
            using SslStream tls = await files.ConnectAsync(server.Port);
            string[] got = Encoding.UTF8.GetString(await TlsFiles.RoundTripAsync(tls, [])).Split("relay\n");
            Assert.Equal(2, got.Length);
            Assert.Matches(@"\nMax open files +17 +17 +files *\n", got[0]);
            Assert.Matches(jit ? @"\nMax cpu time +7 +7 +seconds *\n" : @"\nMax address space +209715200 +209715200 +bytes *\n", got[0]);
            Assert.Equal(plain.Split("relay\n")[0], got[0]);
            Assert.Equal(File.ReadAllText($"/proc/{server.Pid}/limits"), got[1]); // the relay: the parent's limits, none of the program's
            server.WaitForLog(@"^tcpfork: end \d+ status 0$");
        }
    }

    /// <summary>With --limit-* the program is not posix_spawn'ed by the relay: its exec failure still comes back and is logged as without.</summary>
    [Theory]
    [MemberData(nameof(Modes))]
    public async Task A_program_with_limits_that_cannot_be_executed_behind_TLS_is_logged_with_the_error(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartExec(flavor, files.ServerArgs("--limit-nofile", "17"), "/nonexistent/program");
        using SslStream tls = await files.ConnectAsync(server.Port);
        server.WaitForLog(@"^tcpfork: warning: unable to exec /nonexistent/program: No such file or directory$");
        server.WaitForLog(@"^tcpfork: end \d+ status 127$");
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public async Task Exec_cat_echoes_through_TLS_and_refuses_a_plaintext_client(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartExec(flavor, files.ServerArgs(), "cat");
        Assert.True(await EchoesAsync(server.Port, null));
        using (Socket s = EchoClient.Connect(server.Port))
        {
            await SendThenCloseAsync(s, "plain\n"u8.ToArray());
            server.WaitForLog(@"^tcpfork: tls: \d+: handshake failed: not a TLS client \(first byte 0x70 'p': plaintext\?\)$");
        }
        Assert.True(await EchoesAsync(server.Port, null));
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void Bench_tls_measures_handshakes_and_bulk_against_tcpfork_echo_with_tls(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, files.ServerArgs());
        (int code, string stdout, string stderr) = Run.Command(Binaries.AotBinary, "bench", $"127.0.0.1:{server.Port}", "--tls", "-n", "40", "-c", "2", "-r", "3", "--json");
        Assert.True(code == 0, stdout + stderr);
        Assert.Matches("\"workload\":\"rate\",\"tls\":true,.*\"ok\":40,\"failed\":0", stdout);
        (code, stdout, stderr) = Run.Command(Binaries.AotBinary, "bench", $"127.0.0.1:{server.Port}", "--tls", "--bulk", "8M", "--json");
        Assert.True(code == 0, stdout + stderr);
        Assert.Matches("\"workload\":\"bulk\",\"tls\":true,.*\"ok\":1,\"failed\":0", stdout);
        server.WaitForLogCount(@"^tcpfork: end \d+ status 0$", 41);
    }

    /// <summary>
    /// What <c>bench --tls</c> measures, read from the server's <c>tls:</c> lines: by default every connection
    /// is a full handshake (.NET's client would otherwise resume the session it cached from the previous
    /// connection, and "handshakes/s" would be resumptions); with <c>--tls-resume</c> most of them resume.
    /// </summary>
    [Theory]
    [MemberData(nameof(Modes))]
    public void Bench_tls_does_a_full_handshake_per_connection_unless_asked_to_resume(Flavor flavor)
    {
        const int Connections = 30;
        using ServerProcess server = ServerProcess.StartEcho(flavor, files.ServerArgs());
        (int Sessions, int Resumed, string Json) Bench(params string[] extra)
        {
            int from = server.LogCount;
            (int code, string stdout, string stderr) = Run.Command(Binaries.AotBinary, ["bench", $"127.0.0.1:{server.Port}", "--tls", "-n", $"{Connections}", "-c", "2", .. extra, "--json"]);
            Assert.True(code == 0, stdout + stderr);
            // A child logs its tls: line before it exits; the parent logs end after reaping it.
            server.WaitForLogCount(@"^tcpfork: end \d+ status 0$", Connections, from: from);
            string[] sessions = [.. server.StderrLines.Skip(from).Select(l => Regex.Match(l, @"^tcpfork: tls: \d+: \S+ \S+ alpn - client - session (\S+)$")).Where(m => m.Success).Select(m => m.Groups[1].Value)];
            Assert.All(sessions, s => Assert.Contains(s, (string[])["new", "resumed"]));
            return (sessions.Length, sessions.Count(s => s == "resumed"), stdout);
        }

        (int sessions, int resumed, string json) = Bench();
        Assert.Contains("\"tls\":true,\"resume\":false,", json, StringComparison.Ordinal);
        Assert.Equal(Connections, sessions);
        Assert.Equal(0, resumed);

        (sessions, resumed, json) = Bench("--tls-resume");
        Assert.Contains("\"tls\":true,\"resume\":true,", json, StringComparison.Ordinal);
        Assert.Equal(Connections, sessions);
        Assert.True(resumed > Connections / 2, $"{resumed} of {Connections} connections resumed");
    }
}
