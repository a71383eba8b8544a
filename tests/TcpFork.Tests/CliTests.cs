using System.Net;
using System.Net.Sockets;

namespace TcpFork.Tests;

/// <summary>Bad input: exit 2 with a one-line reason and a hint; runtime failures: exit 1 with <c>fatal:</c>.</summary>
public class CliTests
{
    private static (int Code, string Stdout, string Stderr) Run(string exe, params string[] args) => TcpFork.Tests.Run.Command(exe, args);

    [Theory]
    [InlineData("--no-such-option", "no-such-option")]
    [InlineData("--listen 1.2.3", "'1.2.3': expected HOST:PORT")]
    [InlineData("--listen 127.0.0.1:70000", "port '70000' is not a number from 0 to 65535")]
    [InlineData("--listen ::1:80", "write an IPv6 address in brackets")]
    [InlineData("--listen [zz]:80", "'zz' is not an IPv6 address")]
    [InlineData("--listen nosuch.invalid:80", "unknown host 'nosuch.invalid'")]
    [InlineData("--listen 1.2.3:80", "'1.2.3' is not an IPv4 address in dotted-quad form")]
    [InlineData("--listen 0177.0.0.1:80", "'0177.0.0.1' is not an IPv4 address in dotted-quad form")]
    [InlineData("--listen 0x7f.0.0.1:80", "'0x7f.0.0.1' is not an IPv4 address in dotted-quad form")]
    [InlineData("--listen 2130706433:80", "'2130706433' is not an IPv4 address in dotted-quad form")]
    [InlineData("--deny 0177.0.0.1", "--deny '0177.0.0.1' is not an IP address")]
    [InlineData("--allow 0x7f.0.0.1", "--allow '0x7f.0.0.1' is not an IP address")]
    [InlineData("--deny 010.0.0.1/8", "--deny '010.0.0.1/8' is not an IP address")]
    [InlineData("--deny ::ffff:0177.0.0.1", "--deny '::ffff:0177.0.0.1' is not an IP address")]
    [InlineData("--ipv6-prefix 129", "--ipv6-prefix must be from 0 to 128, not '129'")]
    [InlineData("--max-connections 0", "--max-connections must be from 1 to 1000000, not '0'")]
    [InlineData("--max-connections many", "many")]
    [InlineData("--backlog -1", "--backlog")]
    [InlineData("--drain-timeout -5", "--drain-timeout must be a number of seconds from 0 to 86400, not '-5'")]
    [InlineData("--mode sideways", "sideways")]
    [InlineData("--keepalive 60,15", "--keepalive must be IDLE,INTERVAL,COUNT")]
    [InlineData("--keepalive 0,15,4", "--keepalive must be IDLE,INTERVAL,COUNT")]
    [InlineData("--keepalive 60,15,128", "not '60,15,128'")]
    [InlineData("--keepalive on", "not 'on'")]
    [InlineData("--proxy-protocol v3", "--proxy-protocol must be off, v1, v2 or any, not 'v3'")]
    [InlineData("--proxy-protocol v1 --proxy-timeout 0", "--proxy-timeout must be a number of seconds from 0.001 to 3600, not '0'")]
    [InlineData("--proxy-protocol v1 --proxy-from 1.2.3", "--proxy-from '1.2.3' is not an IP address")]
    [InlineData("--proxy-from 127.0.0.1", "--proxy-from needs --proxy-protocol: without it no header is read")]
    [InlineData("-v -q", "--verbose and --quiet cannot be used together")]
    [InlineData("--listen unix:/tmp/tcpfork-idle-refused.sock --idle-timeout 5", "--idle-timeout cannot be used with a unix-socket listener: idle time is measured from TCP_INFO, which unix sockets lack")]
    [InlineData("--deny uid:5-3", "--deny 'uid:5-3': expected uid:N or uid:N-M")]
    [InlineData("--allow uid:-1", "--allow 'uid:-1': expected uid:N or uid:N-M")]
    [InlineData("--limit-nofile 2000000000", "--limit-nofile: 2000000000 is above the kernel's fs.nr_open")]
    public void Bad_input_exits_2_with_a_one_line_reason_and_a_hint(string args, string reason)
    {
        (int code, string stdout, string stderr) = Run(Binaries.AotBinary, ["echo", .. args.Split(' ')]);
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        string line = Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.StartsWith("tcpfork: usage: ", line);
        Assert.Contains(reason, line);
        Assert.EndsWith("(see 'tcpfork --help')", line);
    }

    /// <summary>A bad value echoed back whole would make a line as long as it, and could carry terminal escapes.</summary>
    [Fact]
    public void A_usage_error_echoes_bad_input_short_and_without_control_characters()
    {
        (int code, _, string stderr) = Run(Binaries.AotBinary, "echo", "--backlog", "\u001b[31m\a" + new string('9', 100_000));
        Assert.Equal(2, code);
        string line = Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.True(line.Length < 500, $"{line.Length} characters");
        Assert.DoesNotContain(line, char.IsControl);
        Assert.Contains("\\x1b[31m\\x07", line);
    }

    /// <summary>A limit no child could set (above the hard limit, with --user dropping CAP_SYS_RESOURCE) is refused at start, not failed in every child.</summary>
    [SkippableFact]
    public void A_limit_above_the_hard_limit_that_children_cannot_raise_is_a_usage_error()
    {
        Skip.IfNot(Environment.UserName == "root", "--user needs root to switch users");
        (int code, _, string stderr) = Run("prlimit", "--nofile=64:128", "--", Binaries.AotBinary, "echo", "--user", "nobody", "--limit-nofile", "129");
        Assert.Equal(2, code);
        Assert.Contains("tcpfork: usage: --limit-nofile: 129 is above this process's hard limit of 128, which its children cannot raise", stderr);
        (code, _, _) = Run("prlimit", "--nofile=64:128", "--", Binaries.AotBinary, "echo", "--user", "nobody", "--limit-nofile", "128", "--help");
        Assert.Equal(0, code);
    }

    /// <summary>
    /// The inputs issue 11 found answered with resource keys, .NET type names or the parser's own
    /// sentences: each is one line naming the option (or command) and the value.
    /// </summary>
    [Theory]
    [InlineData("echo --rules /nonexistent", "--rules /nonexistent: No such file or directory")]
    [InlineData("bench nohost.invalid:1", "target 'nohost.invalid:1': unknown host 'nohost.invalid'")]
    [InlineData("echo --mode banana", "--mode must be auto, fork or spawn, not 'banana'")]
    [InlineData("echo --log-format yaml", "--log-format must be text or json, not 'yaml'")]
    [InlineData("bogus", "unknown command 'bogus': give echo, exec or bench")]
    [InlineData("", "no command given: give echo, exec or bench")]
    [InlineData("--bogus", "unknown option '--bogus': give echo, exec or bench first")]
    [InlineData("exec --", "exec needs PROGRAM: the program to run for each connection")]
    [InlineData("exec -l 127.0.0.1:0", "exec needs PROGRAM")]
    [InlineData("exec --bogus -- cat", "exec has no option '--bogus' (PROGRAM and its arguments go after --)")]
    [InlineData("exec --mode spawn -- cat", "--mode spawn applies to exec only with --limit-*, --die-with-parent or --tls-cert")]
    [InlineData("exec --mode fork -- cat", "--mode fork applies to exec only with --limit-*, --die-with-parent or --tls-cert")]
    [InlineData("echo --max-connections", "--max-connections needs a value: N")]
    [InlineData("echo --mode", "--mode needs a value: auto|fork|spawn")]
    [InlineData("echo extra", "echo takes no argument 'extra'")]
    [InlineData("echo --no-such-option", "echo has no option '--no-such-option'")]
    [InlineData("echo --limit-as lots", "--limit-as must be a whole number of at least 1 (K, M, G suffixes allowed), not 'lots'")]
    [InlineData("bench", "bench needs HOST:PORT: the echo server to load")]
    [InlineData("bench 127.0.0.1:1 -c x", "--concurrency must be from 1 to 100000, not 'x'")]
    [InlineData("bench 127.0.0.1:1 --timeout soon", "--timeout must be a number of seconds from 0.001 to 86400, not 'soon'")]
    [InlineData("bench 127.0.0.1:1 --bulk 1T", "--bulk must be a whole number of at least 1 (K, M, G suffixes allowed), not '1T'")]
    public void Each_bad_input_names_the_option_and_the_value_in_tcpforks_words(string args, string reason)
    {
        (int code, string stdout, string stderr) = Run(Binaries.AotBinary, args.Length == 0 ? [] : args.Split(' '));
        Assert.Equal(2, code);
        Assert.Equal("", stdout);
        string line = Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.Equal($"tcpfork: usage: {reason}", line[..Math.Min(line.Length, 16 + reason.Length)]);
        Assert.EndsWith("(see 'tcpfork --help')", line);
        Assert.DoesNotMatch(@"[A-Z][a-z]+_[A-Z][A-Za-z]+_|System\.|TcpFork\.|expected type|Did you mean|Required|Unrecognized|--listen", line);
    }

    /// <summary>
    /// The build strips the runtime's messages to resource keys (UseSystemResourceKeys); the CLI's nets
    /// under the parser never show one. (The JIT test host has the real messages, so the keys are given.)
    /// </summary>
    [Theory]
    [InlineData("IO_FileNotFound_FileName, /nonexistent.rules", true)]
    [InlineData("ArgumentOutOfRange_Generic_MustBeGreaterOrEqual, 0, 1", true)]
    [InlineData("Arg_ParamName_Name", true)]
    [InlineData("--rules /nonexistent: No such file or directory", false)]
    [InlineData("must be positive", false)]
    [InlineData("TcpForkServerOptions.Listen 'x': unknown host", false)]
    public void Runtime_resource_keys_are_recognised(string message, bool isKey) =>
        Assert.Equal(isKey, TcpFork.Cli.Cli.IsResourceKey(message));

    [Fact]
    public void A_library_range_error_with_a_stripped_message_names_the_option_without_the_key()
    {
        string text = TcpFork.Cli.Cli.Describe(new ArgumentOutOfRangeException("MaxConnections", "ArgumentOutOfRange_Generic_MustBeGreaterOrEqual, 0, 1"));
        Assert.Equal("TcpForkServerOptions.MaxConnections: is out of range", text);
        Assert.Equal("--max-connections: is out of range", TcpFork.Cli.LibraryNames.ToFlags(text));
    }

    [Fact]
    public void Help_writes_enum_values_in_lower_case_and_each_default_once_as_the_library_has_it()
    {
        var defaults = new TcpForkServerOptions();
        foreach (string command in new[] { "echo", "exec", "bench" })
        {
            (int code, string stdout, _) = Run(Binaries.AotBinary, command, "--help");
            Assert.Equal(0, code);
            Assert.DoesNotContain("[default:", stdout);
            Assert.DoesNotMatch("Auto|Fork|Spawn", stdout.Replace("Default auto", "", StringComparison.Ordinal));
            if (command != "bench")
            {
                Assert.Contains("--mode <auto|fork|spawn>", stdout);
                Assert.Contains($"Default {defaults.MaxConnections}.", stdout);
                Assert.Contains($"Default {defaults.Backlog}.", stdout);
                Assert.Contains($"Default {defaults.DrainTimeout.TotalSeconds}.", stdout);
                Assert.Contains($"Default {defaults.KeepAliveIdle.TotalSeconds},{defaults.KeepAliveInterval.TotalSeconds},{defaults.KeepAliveCount}:", stdout);
                Assert.Contains($"Default {defaults.Ipv6Prefix}.", stdout);
            }
            foreach (string option in stdout.Split('\n').Where(l => l.TrimStart().StartsWith('-')))
            {
                Assert.True(option.Split("Default ").Length <= 2, option);
            }
        }
    }

    [Theory]
    [InlineData(Flavor.AotFork, "fork")]
    [InlineData(Flavor.AotSpawn, "spawn")]
    public async Task Exec_mode_chooses_how_the_child_that_sets_limits_is_made(Flavor flavor, string mode)
    {
        using ServerProcess server = ServerProcess.StartExec(flavor, ["--limit-nofile", "64"], "sh", "-c", "ulimit -n");
        server.WaitForLog($" mode {mode} ");
        Assert.Equal("64\n", System.Text.Encoding.ASCII.GetString(await EchoClient.EchoOnceAsync(server.Port, [])));
    }

    [Fact]
    public void Fork_mode_under_the_JIT_runtime_is_refused_with_the_reason_and_the_alternative()
    {
        (int code, _, string stderr) = Run(Binaries.JitBinary, "echo", "--mode", "fork");
        Assert.Equal(2, code);
        Assert.Contains("fork mode needs the NativeAOT build", stderr);
        Assert.Contains("or set --mode spawn", stderr); // the library's TcpForkServerOptions.Mode = ProcessMode.Spawn, in the CLI's words
        Assert.DoesNotContain("TcpForkServerOptions", stderr);
    }

    [Fact]
    public void A_port_in_use_exits_1_with_a_fatal_line_naming_the_address()
    {
        using var taken = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        taken.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        taken.Listen();
        int port = ((IPEndPoint)taken.LocalEndPoint!).Port;
        (int code, string stdout, string stderr) = Run(Binaries.AotBinary, "echo", "--listen", $"127.0.0.1:{port}");
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Equal($"tcpfork: fatal: unable to bind 127.0.0.1:{port}: Address already in use", stderr.TrimEnd('\n'));
    }

    [Fact]
    public void Help_exits_0_and_lists_the_options()
    {
        (int code, string stdout, _) = Run(Binaries.AotBinary, "echo", "--help");
        Assert.Equal(0, code);
        foreach (string option in new[] { "--listen", "--mode", "--max-connections", "--backlog", "--drain-timeout", "--verbose", "--quiet" })
        {
            Assert.Contains(option, stdout);
        }
    }

    [Theory]
    [InlineData(Flavor.AotFork, "fork")]
    [InlineData(Flavor.AotSpawn, "spawn")]
    [InlineData(Flavor.JitSpawn, "spawn")]
    public void The_start_line_names_the_mode_in_use_and_several_listeners_each_print_their_port(Flavor flavor, string mode)
    {
        (string exe, string[] modeArgs) = Binaries.For(flavor);
        using ServerProcess server = ServerProcess.Start(exe, ["echo", .. modeArgs, "--listen", "127.0.0.1:0", "--listen", "[::1]:0"], listeners: 2);
        Assert.NotEqual(server.Ports[0], server.Ports[1]);
        server.WaitForLog($@"^tcpfork: start: pid {server.Pid} mode {mode} listen 127\.0\.0\.1:{server.Ports[0]} \[::1\]:{server.Ports[1]} max-connections 1000 backlog 1024$");
    }

    [Fact]
    public void Auto_mode_forks_under_NativeAOT()
    {
        using ServerProcess server = ServerProcess.Start(Binaries.AotBinary, ["echo"]);
        server.WaitForLog(" mode fork ");
    }
}
