using System.Diagnostics;

namespace TcpFork.Tests;

/// <summary>How a test runs tcpfork: the NativeAOT binary (fork or spawn) or the JIT build (spawn only).</summary>
public enum Flavor
{
    AotFork,
    AotSpawn,
    JitSpawn,
}

/// <summary>
/// The tcpfork executables under test. The NativeAOT binary is published once per test run (about
/// 20 s), into artifacts/test-aot; set TCPFORK_AOT_BINARY to use one built elsewhere. The JIT build is
/// the CLI project's own output, built with the tests.
/// </summary>
public static class Binaries
{
    private static readonly Lazy<string> s_aot = new(() => Environment.GetEnvironmentVariable("TCPFORK_AOT_BINARY") is { Length: > 0 } given
        ? given : PublishAot(Path.Combine("src", "TcpFork.Cli", "TcpFork.Cli.csproj"), "test-aot", "tcpfork"), LazyThreadSafetyMode.ExecutionAndPublication);

    private static readonly Lazy<string> s_testHostAot = new(() =>
        PublishAot(Path.Combine("tests", "TcpFork.TestHost", "TcpFork.TestHost.csproj"), "test-aot-host", "TcpFork.TestHost"), LazyThreadSafetyMode.ExecutionAndPublication);

    private static readonly Lazy<string> s_conformanceHostAot = new(() =>
        PublishAot(Path.Combine("tests", "TcpFork.ConformanceHost", "TcpFork.ConformanceHost.csproj"), "test-aot-conformance", "TcpFork.ConformanceHost"), LazyThreadSafetyMode.ExecutionAndPublication);

    private static readonly Lazy<string> s_keyValueAot = new(() =>
        PublishAot(Path.Combine("samples", "KeyValue", "KeyValue.csproj"), "test-aot-keyvalue", "KeyValue"), LazyThreadSafetyMode.ExecutionAndPublication);

    public static string RepoRoot { get; } = FindRepoRoot();

    private static readonly Lazy<string> s_noCloseRangeWrapper = new(() =>
    {
        string output = Path.Combine(RepoRoot, "artifacts", "test-native", "no-close-range");
        Directory.CreateDirectory(Path.GetDirectoryName(output)!);
        (int code, _, string stderr) = Run.Command("gcc", "-O2", "-o", output, Path.Combine(RepoRoot, "tests", "TcpFork.Tests", "Infrastructure", "no-close-range.c"));
        Assert.True(code == 0, "gcc no-close-range.c: " + stderr);
        return output;
    }, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>A wrapper that runs a program with close_range(2) failing with ENOSYS (Infrastructure/no-close-range.c, built with gcc).</summary>
    public static string NoCloseRange => s_noCloseRangeWrapper.Value;

    /// <summary>
    /// Held around every publish and pack: they all build src/TcpFork in Release into the same obj/,
    /// and two at once would corrupt it.
    /// </summary>
    public static readonly object BuildLock = new();

    public static string AotBinary => s_aot.Value;

    /// <summary>The JIT apphost next to the test assembly (the CLI is a project reference).</summary>
    public static string JitBinary
    {
        get
        {
            string path = Path.Combine(AppContext.BaseDirectory, "tcpfork");
            Assert.True(File.Exists(path), $"JIT build of tcpfork not found at {path}");
            return path;
        }
    }

    /// <summary>The library test host (tests/TcpFork.TestHost): NativeAOT for fork, the JIT build otherwise.</summary>
    public static string TestHost(Flavor flavor) => flavor == Flavor.JitSpawn ? BesideTests("TcpFork.TestHost") : s_testHostAot.Value;

    /// <summary>The conformance suite's program (tests/TcpFork.ConformanceHost): NativeAOT for fork and AOT spawn, the JIT build otherwise.</summary>
    public static string ConformanceHost(Flavor flavor) => flavor == Flavor.JitSpawn ? BesideTests("TcpFork.ConformanceHost") : s_conformanceHostAot.Value;

    /// <summary>The sample key-value server: NativeAOT for fork, the JIT build otherwise.</summary>
    public static string KeyValue(Flavor flavor) => flavor == Flavor.JitSpawn ? BesideTests("KeyValue") : s_keyValueAot.Value;

    private static string BesideTests(string name)
    {
        string path = Path.Combine(AppContext.BaseDirectory, name);
        Assert.True(File.Exists(path), $"{name} not found at {path}");
        return path;
    }

    /// <summary>The executable and the <c>--mode</c> arguments for a flavor.</summary>
    public static (string Exe, string[] ModeArgs) For(Flavor flavor) => flavor switch
    {
        Flavor.AotFork => (AotBinary, ["--mode", "fork"]),
        Flavor.AotSpawn => (AotBinary, ["--mode", "spawn"]),
        _ => (JitBinary, ["--mode", "spawn"]),
    };

    private static string PublishAot(string project, string outputName, string binary)
    {
        lock (BuildLock)
        {
            return PublishAotLocked(project, outputName, binary);
        }
    }

    private static string PublishAotLocked(string project, string outputName, string binary)
    {
        string output = Path.Combine(RepoRoot, "artifacts", outputName);
        var psi = new ProcessStartInfo("dotnet")
        {
            ArgumentList = { "publish", Path.Combine(RepoRoot, project), "-c", "Release", "-o", output, "--nologo" },
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using Process p = Process.Start(psi)!;
        Task<string> stdout = p.StandardOutput.ReadToEndAsync();
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            p.Kill(entireProcessTree: true);
            throw new InvalidOperationException("NativeAOT publish took over 5 minutes");
        }
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"NativeAOT publish failed ({p.ExitCode}):\n{stdout.Result}\n{stderr.Result}");
        }
        return Path.Combine(output, binary);
    }

    private static string FindRepoRoot()
    {
        for (string? dir = AppContext.BaseDirectory; dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (File.Exists(Path.Combine(dir, "tcpfork.slnx")))
            {
                return dir;
            }
        }
        throw new InvalidOperationException("repository root (tcpfork.slnx) not found above " + AppContext.BaseDirectory);
    }
}
