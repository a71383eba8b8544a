using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace TcpFork.Tests;

/// <summary>
/// A running tcpfork: started with its stdout and stderr captured, ready once it has printed its
/// <c>Listening for connections on port N</c> lines. Dispose ends it (SIGTERM, then SIGKILL) and
/// kills any child it left behind, so no test leaves processes around.
/// </summary>
public sealed partial class ServerProcess : IDisposable
{
    private readonly Process _process;
    private readonly List<string> _stderr = [];
    private readonly List<string> _stdout = [];
    private readonly object _gate = new();

    private ServerProcess(Process process)
    {
        _process = process;
        // Dedicated threads, not thread-pool callbacks: with many tests blocked in waits on two cores,
        // pool callbacks can fall seconds behind what the server has already written.
        _readers = [Reader(_process.StandardOutput, _stdout), Reader(_process.StandardError, _stderr)];
    }

    private readonly Thread[] _readers;
    private int _streamsAtEnd;

    private Thread Reader(StreamReader from, List<string> into)
    {
        var t = new Thread(() =>
        {
            string? line;
            while ((line = from.ReadLine()) is not null)
            {
                Add(into, line);
            }
            lock (_gate)
            {
                _streamsAtEnd++; // EOF: every writer (the server and any child) has closed it
                Monitor.PulseAll(_gate);
            }
        }) { IsBackground = true, Name = "server output" };
        t.Start();
        return t;
    }

    public int Pid => _process.Id;

    public List<int> Ports { get; } = [];

    public int Port => Ports[0];

    /// <summary>Writes <paramref name="line"/> to the process's stdin.</summary>
    public void WriteInput(string line)
    {
        _process.StandardInput.WriteLine(line);
        _process.StandardInput.Flush();
    }

    /// <summary>Starts tcpfork with <paramref name="args"/> and waits for <paramref name="listeners"/> port lines.</summary>
    public static ServerProcess Start(string exe, IEnumerable<string> args, int listeners = 1, IDictionary<string, string>? env = null)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        foreach (string a in args)
        {
            psi.ArgumentList.Add(a);
        }
        foreach (KeyValuePair<string, string> kv in env ?? new Dictionary<string, string>())
        {
            psi.Environment[kv.Key] = kv.Value;
        }
        var server = new ServerProcess(Process.Start(psi)!);
        try
        {
            for (int i = 0; i < listeners; i++)
            {
                string line = server.WaitForStdout(PortLine(), TimeSpan.FromSeconds(30), skip: i);
                server.Ports.Add(int.Parse(PortLine().Match(line).Groups[1].Value, CultureInfo.InvariantCulture));
            }
        }
        catch
        {
            server.Dispose();
            throw;
        }
        return server;
    }

    /// <summary>
    /// The tests read the per-connection lines (<c>ok</c>, <c>end</c>, <c>deny</c>, <c>status</c>), which
    /// tcpfork writes with <c>-v</c>: added unless the test chose a level itself.
    /// </summary>
    private static string[] Verbose(string[] extra) =>
        extra.Any(a => a is "-q" or "--quiet" or "-v" or "--verbose") ? [] : ["-v"];

    /// <summary>Starts the echo command for a flavor with extra arguments.</summary>
    public static ServerProcess StartEcho(Flavor flavor, params string[] extra)
    {
        (string exe, string[] mode) = Binaries.For(flavor);
        return Start(exe, ["echo", .. mode, .. Verbose(extra), .. extra], extra.Count(a => a is "--listen" or "-l") is var n && n > 0 ? n : 1);
    }

    /// <summary>
    /// Starts <c>tcpfork exec [extra] -- program…</c> with the given binary, and its mode when a tcpfork child
    /// runs before the program (--limit-*, --die-with-parent, --tls-cert): without them exec spawns the program
    /// directly and refuses --mode fork or spawn.
    /// </summary>
    public static ServerProcess StartExec(Flavor flavor, string[] extra, params string[] program) =>
        StartExec(flavor, new Dictionary<string, string>(), extra, program);

    /// <summary>Starts <c>tcpfork exec [extra] -- program…</c> with <paramref name="env"/> added to tcpfork's own environment.</summary>
    public static ServerProcess StartExec(Flavor flavor, IDictionary<string, string> env, string[] extra, params string[] program)
    {
        (string exe, string[] mode) = Binaries.For(flavor);
        mode = extra.Any(a => a.StartsWith("--limit-", StringComparison.Ordinal) || a is "--die-with-parent" or "--tls-cert") ? mode : [];
        return Start(exe, ["exec", .. mode, .. Verbose(extra), .. extra, "--", .. program], extra.Count(a => a is "--listen" or "-l") is var n && n > 0 ? n : 1, env);
    }

    /// <summary>Starts the echo command on a unix socket at <paramref name="path"/>.</summary>
    public static ServerProcess StartUnixEcho(Flavor flavor, string path, params string[] extra)
    {
        (string exe, string[] mode) = Binaries.For(flavor);
        var server = Start(exe, ["echo", .. mode, .. Verbose(extra), "--listen", "unix:" + path, .. extra], listeners: 0);
        server.WaitForStdout(new Regex("^Listening for connections on unix:"), TimeSpan.FromSeconds(30), 0);
        return server;
    }

    [GeneratedRegex(@"^Listening for connections on port (\d+)$")]
    private static partial Regex PortLine();

    private void Add(List<string> list, string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_gate)
        {
            list.Add(line);
            Monitor.PulseAll(_gate);
        }
    }

    public string[] StderrLines
    {
        get
        {
            lock (_gate)
            {
                return [.. _stderr];
            }
        }
    }

    public string Stderr => string.Join('\n', StderrLines);

    /// <summary>Waits for a stderr line matching <paramref name="pattern"/> (counting from line <paramref name="from"/>).</summary>
    public string WaitForLog(string pattern, TimeSpan? timeout = null, int from = 0) =>
        WaitFor(_stderr, new Regex(pattern), timeout ?? TimeSpan.FromSeconds(20), from, "stderr");

    /// <summary>
    /// Waits until <paramref name="count"/> stderr lines match <paramref name="pattern"/> (counting from line
    /// <paramref name="from"/>); returns the last of them. For "every child has been reaped": the parent logs
    /// <c>end P …</c> after waitpid, so N such lines mean N children are gone.
    /// </summary>
    public string WaitForLogCount(string pattern, int count, TimeSpan? timeout = null, int from = 0) =>
        WaitFor(_stderr, new Regex(pattern), timeout ?? TimeSpan.FromSeconds(20), from, "stderr", skip: count - 1);

    /// <summary>How many stderr lines there are so far (a starting point for <see cref="WaitForLog"/>).</summary>
    public int LogCount
    {
        get
        {
            lock (_gate)
            {
                return _stderr.Count;
            }
        }
    }

    /// <summary>Waits for a stdout line matching <paramref name="pattern"/>.</summary>
    public string WaitForOutput(string pattern, TimeSpan? timeout = null) => WaitFor(_stdout, new Regex(pattern), timeout ?? TimeSpan.FromSeconds(20), 0, "stdout");

    private string WaitForStdout(Regex pattern, TimeSpan timeout, int skip) => WaitFor(_stdout, pattern, timeout, 0, "stdout", skip);

    private string WaitFor(List<string> list, Regex pattern, TimeSpan timeout, int from, string name, int skip = 0)
    {
        var deadline = Stopwatch.StartNew();
        int next = from, seen = 0;
        lock (_gate)
        {
            while (true)
            {
                // Each line is matched once, however many lines arrive while waiting.
                for (; next < list.Count; next++)
                {
                    if (pattern.IsMatch(list[next]) && seen++ == skip)
                    {
                        return list[next];
                    }
                }
                TimeSpan left = timeout - deadline.Elapsed;
                // Both streams at EOF: every line the server (or a child) wrote has been read, none can follow.
                if (left <= TimeSpan.Zero || _streamsAtEnd == _readers.Length)
                {
                    throw new TimeoutException($"no {name} line matching /{pattern}/ (match {skip + 1}; {seen} seen) " +
                        (left <= TimeSpan.Zero ? $"within {timeout.TotalSeconds} s" : "before the output ended") +
                        $"; exited: {_process.HasExited}; stdout:\n{string.Join('\n', _stdout)}\nstderr:\n{string.Join('\n', _stderr)}");
                }
                Monitor.Wait(_gate, left); // woken by every new line and by EOF
            }
        }
    }

    public void Signal(int signal) => Assert.Equal(0, Native.Kill(Pid, signal));

    /// <summary>
    /// Waits for the server to exit; returns its exit code. With <paramref name="outputEnds"/> false it
    /// does not wait for the output to end: a process it started (an upgrade's new parent) still writes there.
    /// </summary>
    public int WaitForExit(TimeSpan timeout, bool outputEnds = true)
    {
        Assert.True(_process.WaitForExit(timeout), $"tcpfork did not exit within {timeout.TotalSeconds} s; stderr:\n{Stderr}");
        foreach (Thread reader in outputEnds ? _readers : [])
        {
            reader.Join(TimeSpan.FromSeconds(5)); // everything written before exit has been read
        }
        return _process.ExitCode;
    }

    public bool HasExited => _process.HasExited;

    private bool _disposed;

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        List<int> children = _process.HasExited ? [] : Native.Children(Pid).Select(c => c.Pid).ToList();
        if (!_process.HasExited)
        {
            Native.Kill(Pid, Native.SIGTERM);
            if (!_process.WaitForExit(TimeSpan.FromSeconds(5)))
            {
                _process.Kill();
                _process.WaitForExit(TimeSpan.FromSeconds(5));
            }
        }
        foreach (int child in children)
        {
            Native.Kill(child, Native.SIGKILL);
        }
        _process.Dispose();
    }
}
