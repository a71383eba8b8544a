using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace TcpFork.Tests;

/// <summary><c>tcpfork exec</c> as a tcpserver drop-in: descriptors, UCSPI environment, exec failures, limits, users.</summary>
public class ExecTests
{
    /// <summary>Both ways a program is started: spawned directly, or from a tcpfork child (which --limit-* needs).</summary>
    public static TheoryData<Flavor, bool> Paths() => new()
    {
        { Flavor.AotFork, false }, { Flavor.AotFork, true }, { Flavor.JitSpawn, false }, { Flavor.JitSpawn, true },
    };

    private static string[] Via(bool throughChild) => throughChild ? ["--limit-nofile", "1024"] : [];

    /// <summary>Sends, half-closes, returns what came back; a reset (closed with our bytes unread) reads as nothing.</summary>
    private static async Task<string> ReadAllText(int port, string send = "", AddressFamily family = AddressFamily.InterNetwork)
    {
        using Socket s = EchoClient.Connect(port, family);
        try
        {
            return Encoding.UTF8.GetString(await EchoClient.ExchangeAsync(s, Encoding.UTF8.GetBytes(send)));
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionReset)
        {
            return "";
        }
    }

    [SkippableTheory]
    [InlineData("127.0.0.1", "TCP")]
    [InlineData("::1", "TCP6")]
    public void The_UCSPI_variables_match_what_tcpclient_sees_from_its_side(string ip, string proto)
    {
        string? tcpclient = Run.Which("tcpclient");
        Skip.If(tcpclient is null, "tcpclient (Debian ucspi-tcp-ipv6) is not installed; .ci/run installs it");
        string listen = ip.Contains(':', StringComparison.Ordinal) ? $"[{ip}]:0" : $"{ip}:0";
        using ServerProcess server = ServerProcess.StartExec(Flavor.AotFork, ["--listen", listen],
            "sh", "-c", "echo $PROTO $TCPLOCALIP $TCPLOCALPORT $TCPREMOTEIP $TCPREMOTEPORT $TCPCONNNUM ${TCPREMOTEHOST-unset} ${TCPREMOTEINFO-unset}");
        (int code, string stdout, string stderr) = Run.Command(tcpclient!, "-HR", "-l0", ip, server.Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "sh", "-c", "read line <&6; echo \"$line|$TCPLOCALIP $TCPLOCALPORT $TCPREMOTEIP $TCPREMOTEPORT\"");
        Assert.True(code == 0, stderr);
        string[] halves = stdout.Trim().Split('|');
        string[] server_ = halves[0].Split(' ');
        string[] client = halves[1].Split(' ');
        Assert.Equal(proto, server_[0]);
        Assert.Equal(client[2], server_[1]); // server's local IP = client's remote IP
        Assert.Equal(client[3], server_[2]);
        Assert.Equal(client[0], server_[3]); // server's remote IP = client's local IP
        Assert.Equal(client[1], server_[4]);
        Assert.Equal("1", server_[5]);
        Assert.Equal(["unset", "unset"], server_[6..]); // no DNS, no ident
        server.WaitForLog($@"^tcpfork: ok \d+ :{System.Text.RegularExpressions.Regex.Escape(ip)}:{server.Port} :{System.Text.RegularExpressions.Regex.Escape(ip)}::{client[1]}$");
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public async Task Cat_as_the_program_echoes_1_MiB_byte_exact(Flavor flavor, bool throughChild)
    {
        using ServerProcess server = ServerProcess.StartExec(flavor, Via(throughChild), "cat");
        byte[] data = RandomNumberGenerator.GetBytes(1024 * 1024);
        Assert.Equal(data, await EchoClient.EchoOnceAsync(server.Port, data));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public async Task A_program_that_does_not_exist_is_logged_and_the_server_goes_on(Flavor flavor, bool throughChild)
    {
        using ServerProcess server = ServerProcess.StartExec(flavor, Via(throughChild), "/nonexistent/program");
        Assert.Equal("", await ReadAllText(server.Port, "hello"));
        server.WaitForLog(@"^tcpfork: warning: unable to exec /nonexistent/program: No such file or directory");
        if (throughChild)
        {
            server.WaitForLog(@"^tcpfork: end \d+ status 127$");
        }
        Assert.Equal("", await ReadAllText(server.Port, "again"));
        Assert.False(server.HasExited);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public async Task The_program_has_only_0_1_2_no_blocked_or_ignored_signals_and_its_environment(Flavor flavor, bool throughChild)
    {
        using ServerProcess server = ServerProcess.StartExec(flavor, [.. Via(throughChild), "--env", "GREETING=hi there"],
            "sh", "-c", "while read -r l; do case $l in SigBlk*|SigIgn*) echo \"$l\";; esac; done < /proc/$$/status; ls /proc/$$/fd; echo \"$GREETING|${TCPFORK_CHILD_FD-none}\"");
        // The masks are read by the shell itself with a builtin (no fork): a reading taken while the shell
        // forks would catch it with every signal blocked, as shells block them around their own fork().
        string[] lines = (await ReadAllText(server.Port)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        int sig = 0;
        Assert.Equal(["0", "1", "2"], lines[2..^1]); // the shell's descriptors, listed by ls from outside
        Assert.Equal("SigBlk:\t0000000000000000", lines[sig]);
        // No signal ignored (SIGPIPE back to default, unlike in the .NET parent), except glibc's internal 32
        // and 33, which posix_spawn will not touch and the program's own libc takes over at start.
        ulong ignored = ulong.Parse(lines[sig + 1]["SigIgn:\t".Length..], System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(0UL, ignored & ~((1UL << 31) | (1UL << 32)));
        Assert.Equal("hi there|none", lines[^1]);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public async Task Env_replaces_a_variable_tcpfork_inherited_and_getenv_sees_the_given_value(Flavor flavor, bool throughChild)
    {
        using ServerProcess server = ServerProcess.StartExec(flavor, new Dictionary<string, string> { ["GREETING"] = "inherited" },
            [.. Via(throughChild), "--env", "GREETING=first", "--env", "GREETING=given"],
            "env"); // env(1) prints environ as the program got it (a shell would tidy duplicates away)
        string[] lines = (await ReadAllText(server.Port)).Split('\n');
        Assert.Equal(["GREETING=given"], lines.Where(l => l.StartsWith("GREETING=", StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData("TCPREMOTEIP=10.9.8.7")]
    [InlineData("PROTO=UNIX")]
    [InlineData("TCPLOCALHOST=spoofed")]
    [InlineData("TCP6REMOTEPORT=1")]
    [InlineData("TCPCONNNUM=0")]
    [InlineData("TCPREMOTEINFO=root")]
    public void Env_of_a_UCSPI_variable_is_refused_with_exit_2_and_one_line(string entry)
    {
        (int code, string stdout, string stderr) = Run.Command(TimeSpan.FromSeconds(15), Binaries.AotBinary, "exec", "--env", entry, "--", "cat");
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        string line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("tcpfork: usage: --env '" + entry[..entry.IndexOf('=', StringComparison.Ordinal)] + "' is a UCSPI variable", line);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public async Task A_long_local_name_reaches_the_program_and_the_parent_serves_on(Flavor flavor, bool throughChild)
    {
        string name = new('n', 5000); // the UCSPI buffer was 1 KiB: the parent aborted at the first connection
        using ServerProcess server = ServerProcess.StartExec(flavor, [.. Via(throughChild), "--local-name", name],
            "sh", "-c", "echo ${#TCPLOCALHOST} ${#TCP6LOCALHOST}");
        Assert.Equal("5000 5000\n", await ReadAllText(server.Port));
        Assert.Equal("5000 5000\n", await ReadAllText(server.Port));
        Assert.False(server.HasExited);
    }

    [Fact]
    public void A_local_name_too_long_for_an_environment_entry_is_refused_at_start()
    {
        // 131058 bytes fit in an argument (MAX_ARG_STRLEN is 131072 with the NUL) but not in TCP6LOCALHOST=NAME:
        // every exec would fail with E2BIG. (An --env entry fits wherever its argument did.)
        (int code, _, string stderr) = Run.Command(TimeSpan.FromSeconds(15), Binaries.AotBinary, "exec", "--local-name", new string('n', 131058), "--", "cat");
        Assert.Equal(2, code);
        string line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal("tcpfork: usage: --local-name: the local name is 131058 bytes; at most 131057 fit in an environment variable (see 'tcpfork --help')", line);
    }

    private const string KeepAliveProbe =
        "import socket; s = socket.socket(fileno=0); T = socket.IPPROTO_TCP; " +
        "print(s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), s.getsockopt(T, socket.TCP_KEEPIDLE), s.getsockopt(T, socket.TCP_KEEPINTVL), s.getsockopt(T, socket.TCP_KEEPCNT)); s.detach()";

    [SkippableTheory]
    [InlineData(Flavor.AotFork, "127.0.0.1:0", null, "1 60 15 4")]
    [InlineData(Flavor.AotFork, "[::1]:0", null, "1 60 15 4")]
    [InlineData(Flavor.AotFork, "127.0.0.1:0", "30,5,3", "1 30 5 3")]
    [InlineData(Flavor.JitSpawn, "127.0.0.1:0", "7,2,9", "1 7 2 9")]
    [InlineData(Flavor.AotSpawn, "127.0.0.1:0", "off", "0 ")]
    public async Task An_accepted_connection_has_keepalive_from_the_listener_on_by_default_and_tunable(Flavor flavor, string listen, string? keepalive, string expected)
    {
        // Read by the program from its own descriptor 0, the server's side of the connection: the values were set
        // only on the listening socket, and Linux copied them into the accepted one.
        Skip.If(Run.Which("python3") is null, "python3 not found");
        string[] extra = keepalive is null ? ["--listen", listen] : ["--listen", listen, "--keepalive", keepalive];
        using ServerProcess server = ServerProcess.StartExec(flavor, extra, "python3", "-c", KeepAliveProbe);
        string got = await ReadAllText(server.Port, "", listen.StartsWith('[') ? AddressFamily.InterNetworkV6 : AddressFamily.InterNetwork);
        Assert.StartsWith(expected, got);
    }

    /// <summary>exec (posix_spawnp of the program), fork (a tcpfork child execs it) and spawn (a spawned tcpfork child execs it).</summary>
    public static TheoryData<Flavor, bool> ModesOfLaunch() => new()
    {
        { Flavor.AotFork, false }, { Flavor.AotFork, true }, { Flavor.AotSpawn, true }, { Flavor.JitSpawn, false },
    };

    [Theory]
    [MemberData(nameof(ModesOfLaunch))]
    public async Task A_grandchild_holding_the_connection_ends_with_the_child_at_max_lifetime(Flavor flavor, bool throughChild)
    {
        // The shell ignores SIGTERM and so does the cat it starts (an ignored signal stays ignored across fork
        // and exec); the inner shell prints its pid, which cat keeps. Signalling the child alone, SIGKILL
        // took the outer shell and left cat holding the connection, an orphan.
        using ServerProcess server = ServerProcess.StartExec(flavor, [.. Via(throughChild), "--max-lifetime", "1"],
            "sh", "-c", "trap '' TERM; sh -c 'echo $$; exec cat'; :");
        using Socket s = EchoClient.Connect(server.Port);
        using var reader = new StreamReader(new NetworkStream(s, ownsSocket: false));
        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        int grandchild = int.Parse((await reader.ReadLineAsync(deadline.Token))!, System.Globalization.CultureInfo.InvariantCulture);
        int pidFd = Native.PidFd(grandchild);
        try
        {
            // SIGTERM at 1 s (ignored), SIGKILL 2 s later: to the group, so cat goes with the shell and the client sees EOF.
            Assert.Null(await reader.ReadLineAsync(deadline.Token));
            server.WaitForLog(@"^tcpfork: timeout: \d+ ignored SIGTERM; sent SIGKILL$");
            server.WaitForLog(@"^tcpfork: end \d+ signal SIGKILL$");
            Assert.True(pidFd < 0 || Native.WaitForExit(pidFd, TimeSpan.FromSeconds(10)), $"the grandchild {grandchild} outlived its connection");
            pidFd = -1;
            Assert.False(Native.IsAlive(grandchild));
        }
        finally
        {
            if (pidFd >= 0 && Native.IsAlive(grandchild))
            {
                Native.Kill(grandchild, Native.SIGKILL); // before the fix: leave no orphan behind
            }
        }
    }

    [SkippableTheory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task A_child_over_its_address_space_limit_fails_and_the_server_is_fine(Flavor flavor)
    {
        // For a program, --limit-as is RLIMIT_AS exactly (as softlimit -a), set just before exec. Not under the
        // JIT: a JIT child may need to map memory (a stub, a W^X mapping) between setrlimit and exec (README).
        Skip.If(Run.Which("python3") is null, "python3 not found");
        using ServerProcess server = ServerProcess.StartExec(flavor, ["--limit-as", "200M"],
            "python3", "-c", "import sys; n=int(sys.stdin.readline()); b=bytearray(n*1024*1024); print('allocated', n)");
        Assert.Equal("allocated 10\n", await ReadAllText(server.Port, "10\n"));
        string over = await ReadAllText(server.Port, "500\n");
        Assert.DoesNotContain("allocated", over);
        server.WaitForLog(@"^tcpfork: end \d+ status [1-9]\d*$");
        Assert.Equal("allocated 20\n", await ReadAllText(server.Port, "20\n"));
    }

    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task A_programs_address_space_limit_is_exactly_the_number_given(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartExec(flavor, ["--limit-as", "200M"], "sh", "-c", "ulimit -v");
        Assert.Equal("204800\n", await ReadAllText(server.Port)); // KiB
    }

    [SkippableFact]
    public async Task With_user_nobody_the_child_runs_as_nobody()
    {
        Skip.IfNot(Environment.UserName == "root", "--user needs root to switch users");
        using ServerProcess server = ServerProcess.StartExec(Flavor.AotFork, ["--user", "nobody"], "id", "-un");
        Assert.Equal("nobody\n", await ReadAllText(server.Port));
        Assert.Equal("65534", Native.StatusField(server.Pid, "Uid").Split('\t')[0]);
    }

    /// <summary>
    /// Issue 10 item 7: a child spawned for a program (here through the child role, which --limit-*
    /// needs) takes everything from the parent. It used to parse the command line again, so a rules
    /// file broken after start, or readable only by root under --user, made every connection exit 2.
    /// </summary>
    [SkippableTheory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    [InlineData(Flavor.JitSpawn)]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public async Task A_child_reads_no_file_and_no_command_line_of_its_own(Flavor flavor)
    {
        Skip.IfNot(Environment.UserName == "root", "--user needs root to switch users");
        string dir = Directory.CreateTempSubdirectory("tcpfork-rules-").FullName;
        try
        {
            string rules = Path.Combine(dir, "rules");
            File.WriteAllText(rules, "allow 127.0.0.0/8\n");
            File.SetUnixFileMode(rules, UnixFileMode.UserRead | UnixFileMode.UserWrite); // root only
            using ServerProcess server = ServerProcess.StartExec(flavor, ["--rules", rules, "--user", "nobody", .. Via(true), "--env", "GREETING=hi"],
                "sh", "-c", "echo \"$GREETING $(id -un) $TCPREMOTEIP\"");
            Assert.Equal("hi nobody 127.0.0.1\n", await ReadAllText(server.Port));
            File.WriteAllText(rules, "this is not a rule\n");
            Assert.Equal("hi nobody 127.0.0.1\n", await ReadAllText(server.Port));
            File.Delete(rules);
            Assert.Equal("hi nobody 127.0.0.1\n", await ReadAllText(server.Port));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void An_unknown_user_is_a_usage_error()
    {
        (int code, _, string stderr) = Run.Command(Binaries.AotBinary, "exec", "--user", "no-such-user-xyz", "--", "cat");
        Assert.Equal(2, code);
        Assert.Contains("--user: no such user 'no-such-user-xyz'", stderr);
    }

    [Fact]
    public void Exec_without_a_program_is_a_usage_error()
    {
        (int code, _, string stderr) = Run.Command(Binaries.AotBinary, "exec", "--listen", "127.0.0.1:0");
        Assert.Equal(2, code);
        Assert.StartsWith("tcpfork: usage: ", stderr);
    }
}
