using System.Diagnostics;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace TcpFork.ConformanceHost;

/// <summary>What Main made before Run(): in fork mode the parent's, in spawn mode the child's own.</summary>
internal sealed record ParentState(int ProcessId, int FirstSharedRandom, FileStream KeptFile);

/// <summary>
/// One probe per connection: <c>NAME [ARG]</c> → <c>ok VALUE</c> or <c>fail REASON</c>, and the child's
/// exit code. Each is what a handler would do; the tests compare the answers of fork and spawn mode.
/// Anything that could hang is bounded, so a broken runtime is a <c>fail timeout</c>, not a stuck child.
/// </summary>
internal static partial class Probes
{
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(10);

    [LibraryImport("libc", EntryPoint = "getpid")]
    private static partial int GetPid();

    [LibraryImport("libc", EntryPoint = "kill")]
    private static partial int Kill(int pid, int signal);

    public static async Task<(string Reply, int ExitCode)> RunAsync(string probe, ParentState parent)
    {
        string[] words = probe.Split(' ', 2);
        string arg = words.Length > 1 ? words[1] : "";
        try
        {
            return words[0] switch
            {
                "guid" => Ok(Guid.NewGuid().ToString()),
                "rng" => Ok(Convert.ToHexString(RandomNumberGenerator.GetBytes(16))),
                "random" => Ok($"{new Random().Next()} {Random.Shared.Next()}"),
                "pid" => Ok($"{Environment.ProcessId} {Process.GetCurrentProcess().Id} {GetPid()} {parent.ProcessId}"),
                "console" => Console(arg),
                "files" => Files(parent),
                "threadpool" => await ThreadPoolBurst(),
                "async" => await Delay(),
                "timer" => Timer(),
                "http" => Ok(await Http(arg)),
                "tls" => Ok(await Tls(int.Parse(arg, System.Globalization.CultureInfo.InvariantCulture))),
                "dns" => Ok(string.Join(',', (await Dns.GetHostAddressesAsync("localhost")).Select(a => a.ToString()).Order())),
                "process" => await Spawn(),
                "finalizer" => Finalizer(),
                "wait-finalizers" => WaitForFinalizers(),
                "allocate" => Allocate(),
                "crash" => Crash(),
                "sigterm" => SigTerm(),
                "exit" => Exit(int.Parse(arg, System.Globalization.CultureInfo.InvariantCulture)),
                _ => ("fail unknown probe", 2),
            };
        }
        catch (Exception e)
        {
            return ($"fail {e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}", 1);
        }
    }

    private static (string, int) Ok(string value) => ($"ok {value}", 0);

    private static (string, int) Console(string marker)
    {
        System.Console.Out.WriteLine($"{marker} out");
        System.Console.Error.WriteLine($"{marker} err");
        return Ok(marker);
    }

    /// <summary>Opens three files first (taking the lowest free numbers), then writes and reads a fourth, and reads Main's file.</summary>
    private static (string, int) Files(ParentState parent)
    {
        string dir = Directory.CreateTempSubdirectory("conformance").FullName;
        try
        {
            var opened = Enumerable.Range(0, 3).Select(i => File.Create(Path.Combine(dir, $"first{i}"))).ToList();
            string path = Path.Combine(dir, "data");
            File.WriteAllText(path, $"written by {GetPid()}");
            string back = File.ReadAllText(path);
            opened.ForEach(f => f.Dispose());
            byte[] kept = new byte[64];
            int n = RandomAccess.Read(parent.KeptFile.SafeFileHandle, kept, 0);
            return back == $"written by {GetPid()}" ? Ok(System.Text.Encoding.UTF8.GetString(kept, 0, n)) : ($"fail read back '{back}'", 1);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task<(string, int)> ThreadPoolBurst()
    {
        int count = 0;
        Parallel.For(0, 100, _ => Interlocked.Increment(ref count));
        await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => Task.Run(() => Interlocked.Increment(ref count)))).WaitAsync(s_limit);
        return Ok(count.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    private static async Task<(string, int)> Delay()
    {
        var clock = Stopwatch.StartNew();
        await Task.Delay(20).WaitAsync(s_limit);
        // The timer fires on the millisecond tick: up to a tick early is still a delay of 20 ms.
        return Ok(clock.ElapsedMilliseconds >= 15 ? "delayed" : $"early after {clock.Elapsed.TotalMilliseconds} ms");
    }

    private static (string, int) Timer()
    {
        using var fired = new ManualResetEventSlim();
        using var timer = new Timer(_ => fired.Set(), null, 10, Timeout.Infinite);
        return fired.Wait(s_limit) ? Ok("fired") : ("fail timeout", 1);
    }

    private static async Task<string> Http(string url)
    {
        using var client = new HttpClient { Timeout = s_limit };
        return await client.GetStringAsync(new Uri(url));
    }

    private static async Task<string> Tls(int port)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port).WaitAsync(s_limit);
        using var tls = new SslStream(tcp.GetStream(), false, (_, _, _, _) => true); // the test's throwaway certificate
        await tls.AuthenticateAsClientAsync("localhost").WaitAsync(s_limit);
        return $"{tls.SslProtocol} {tls.RemoteCertificate?.Subject}";
    }

    private static async Task<(string, int)> Spawn()
    {
        using var echo = Process.Start(new ProcessStartInfo("/bin/echo", "from a grandchild") { RedirectStandardOutput = true })!;
        string output = await echo.StandardOutput.ReadToEndAsync().WaitAsync(s_limit);
        await echo.WaitForExitAsync().WaitAsync(s_limit);
        return Ok($"{output.Trim()} exit {echo.ExitCode}");
    }

    private static volatile int s_finalized;
    private static readonly SemaphoreSlim s_finalizedOne = new(0);

    private sealed class Finalizable
    {
        ~Finalizable()
        {
            Interlocked.Increment(ref s_finalized);
            s_finalizedOne.Release();
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static void Drop(int count)
    {
        for (int i = 0; i < count; i++)
        {
            _ = new Finalizable();
        }
    }

    /// <summary>A finalizer runs after a collection, with nothing waiting for it.</summary>
    private static (string, int) Finalizer()
    {
        Drop(10);
        GC.Collect();
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < 10; i++)
        {
            // Each finalizer releases once: wait for ten releases, never longer than the limit in all.
            if (!s_finalizedOne.Wait(s_limit - clock.Elapsed < TimeSpan.Zero ? TimeSpan.Zero : s_limit - clock.Elapsed))
            {
                break;
            }
        }
        return s_finalized >= 10 ? Ok("ran") : ($"fail {s_finalized} of 10 finalizers ran", 1);
    }

    /// <summary>GC.WaitForPendingFinalizers returns, three times (a second request is where a broken finalizer event hangs).</summary>
    private static (string, int) WaitForFinalizers()
    {
        for (int round = 1; round <= 3; round++)
        {
            Drop(10);
            GC.Collect();
            var waiter = new Thread(GC.WaitForPendingFinalizers) { IsBackground = true };
            waiter.Start();
            if (!waiter.Join(s_limit))
            {
                return ($"fail timeout in round {round}", 1);
            }
        }
        return s_finalized >= 30 ? Ok("returned") : ($"fail returned but {s_finalized} of 30 finalizers ran", 1);
    }

    /// <summary>200 MB through the GC, 1 MB at a time, keeping the last few alive.</summary>
    private static (string, int) Allocate()
    {
        int before = GC.CollectionCount(0);
        var recent = new byte[8][];
        long sum = 0;
        for (int i = 0; i < 200; i++)
        {
            byte[] block = new byte[1 << 20];
            block[i] = 1;
            recent[i % recent.Length] = block;
            sum += block.Length;
        }
        return GC.CollectionCount(0) > before ? Ok($"{sum >> 20} MiB collected") : ("fail no collection", 1);
    }

    /// <summary>An unhandled exception on a background thread ends the process, as in any .NET program.</summary>
    private static (string, int) Crash()
    {
        var thread = new Thread(() => throw new InvalidOperationException("conformance crash"));
        thread.Start();
        // The runtime ends the process on the crashing thread, so this join never returns unless it survived.
        thread.Join(s_limit);
        return ("fail still alive", 1);
    }

    private static (string, int) SigTerm()
    {
        using var received = new ManualResetEventSlim();
        using var registration = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true; // handled: the process goes on
            received.Set();
        });
        Kill(GetPid(), 15);
        return received.Wait(s_limit) ? Ok("handled") : ("fail timeout", 1);
    }

    private static (string, int) Exit(int code)
    {
        Environment.Exit(code);
        return ("fail Environment.Exit returned", 1);
    }
}
