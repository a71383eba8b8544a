using System.Runtime.CompilerServices;

namespace TcpFork;

/// <summary>
/// What it takes for a forked child to be a whole .NET process. fork() copies the runtime's state but
/// only the calling thread, so the parent and the child each do their part (docs/fork-safety.md,
/// "The forked child's runtime", lists every piece of per-process state and what happens to it):
/// <list type="bullet">
/// <item><b>Parent, once, before the first fork</b>: <see cref="ExtraThreads"/> finds threads a fork
/// would lose, and <see cref="ParkFinalizer"/> moves the runtime's finalizer thread out of the
/// runtime's wait into ours, where it stays for the parent's whole life.</item>
/// <item><b>Child, right after the fork</b>: <see cref="Repair"/> clears the caches that hold the
/// parent's values and starts a finalizer thread of its own.</item>
/// </list>
/// Why park: the finalizer waits on a condition variable (NativeAOT's g_FinalizerEvent). A thread
/// that was waiting there at the fork stays registered in the child's copy of it without existing; with
/// glibc's condition variables the second finalization request in a child whose new finalizer thread
/// waits there too then blocks forever in pthread_cond_signal (measured: the child hung on its second
/// GC.WaitForPendingFinalizers). A finalizer parked in our own finalizer is registered nowhere, so the
/// child's copy of the event is clean; and a thread asleep in pause(2), in preemptive mode, holds no
/// lock and can never be mid-work at a fork, which makes the parent's "finalizer idle" invariant hold by
/// construction instead of by waiting.
/// </summary>
internal static unsafe class ForkedRuntime
{
    private const string FinalizerThreadName = ".NET Finalizer";

    private static volatile bool s_parked;

    /// <summary>True once parked, when the runtime's finalizer loop is linked in (Interop.Runtime) for children to run.</summary>
    public static bool CanRestoreFinalizer { get; private set; }

    /// <summary>
    /// The threads besides the calling one and the runtime's finalizer, each named with what usually
    /// starts it. Fork mode needs none: the child would have only the calling thread, and a lock held
    /// by another (the thread pool's, a timer's) would stay held in it forever.
    /// </summary>
    public static IReadOnlyList<string> ExtraThreads()
    {
        // The finalizer thread takes its name when it first runs managed code; until then it has the
        // program's name. One finalization pass makes sure it has.
        if (!s_parked)
        {
            GC.WaitForPendingFinalizers();
        }
        var extra = new List<string>();
        string self = Interop.GetTid().ToString(System.Globalization.CultureInfo.InvariantCulture);
        string main = Interop.GetPid().ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (string task in Directory.GetDirectories("/proc/self/task"))
        {
            if (Path.GetFileName(task) == self)
            {
                continue;
            }
            string name;
            try
            {
                name = File.ReadAllText(Path.Combine(task, "comm")).TrimEnd('\n');
            }
            catch (IOException)
            {
                continue; // it ended
            }
            if (name == FinalizerThreadName)
            {
                continue;
            }
            string cause = Path.GetFileName(task) == main ? "the main thread: Run() was called from another thread, e.g. after an await" : TypicalCause(name);
            extra.Add($"'{name}' ({cause})");
        }
        return extra;
    }

    private static string TypicalCause(string thread) => thread switch
    {
        _ when thread.StartsWith(".NET TP", StringComparison.Ordinal) || thread.StartsWith(".NET Long", StringComparison.Ordinal)
            => "the thread pool: await, Task.Run, Parallel, ThreadPool",
        _ when thread.StartsWith(".NET Timer", StringComparison.Ordinal) => "a Timer or Task.Delay",
        _ when thread.StartsWith(".NET SigHandler", StringComparison.Ordinal) => "Console, Process or PosixSignalRegistration",
        _ when thread.StartsWith(".NET Sockets", StringComparison.Ordinal) => "a System.Net.Sockets.Socket",
        _ => "a thread the program started",
    };

    /// <summary>
    /// Hands the finalizer thread an object whose finalizer blocks the parent's signals (so no thread
    /// needs the re-exec of <see cref="SignalMask"/>) and then sleeps for good. Call after the last
    /// GC.WaitForPendingFinalizers the parent needs: from here on that call would never return.
    /// Throws when the finalizer does not arrive within <paramref name="timeout"/>.
    /// </summary>
    public static void ParkFinalizer(TimeSpan timeout)
    {
        if (s_parked)
        {
            return;
        }
        CanRestoreFinalizer = Interop.IsRuntimeLinked();
        DropParker();
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        while (!s_parked)
        {
            if (Environment.TickCount64 > deadline)
            {
                throw new InvalidOperationException("the finalizer thread did not run a finalizer within " + timeout.TotalSeconds + " s; fork mode cannot be made safe");
            }
            Thread.Sleep(1);
        }
        // Settled again (ParentMemory.Settle): every page parking touched would be copied by every fork.
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void DropParker() => _ = new Parker();

    private sealed class Parker
    {
        ~Parker()
        {
            SignalMask.Block();
            s_parked = true;
            while (true)
            {
                Interop.Pause();
            }
        }
    }

    /// <summary>
    /// In a forked child, before the handler and with the signal mask already reset (the new thread
    /// inherits it): per-process caches get this process's values and a finalizer thread runs again.
    /// </summary>
    public static void Repair()
    {
        ProcessIdCache(null) = 0; // recomputed from getpid on next use; Process.GetCurrentProcess() reads it
        ReseedSharedRandom();
        if (CanRestoreFinalizer)
        {
            var finalizer = new Thread(Interop.ProcessFinalizers) { IsBackground = true, Name = FinalizerThreadName };
            finalizer.Start();
        }
    }

    /// <summary>
    /// Random.Shared keeps a xoshiro256** state per thread, seeded once: every child would continue the
    /// parent's sequence (CPython re-seeds its random module after fork for the same reason). New seed
    /// bytes from the kernel, never all zero (xoshiro's one invalid state).
    /// </summary>
    private static void ReseedSharedRandom()
    {
        object state = SharedRandomState(null);
        Span<ulong> seed = stackalloc ulong[4];
        do
        {
            Interop.FillRandom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(seed));
        }
        while ((seed[0] | seed[1] | seed[2] | seed[3]) == 0);
        S0(state) = seed[0];
        S1(state) = seed[1];
        S2(state) = seed[2];
        S3(state) = seed[3];
    }

    private const string CoreLib = ", System.Private.CoreLib";
    private const string Xoshiro = "System.Random+XoshiroImpl" + CoreLib;

    [UnsafeAccessor(UnsafeAccessorKind.StaticField, Name = "s_processId")]
    private static extern ref int ProcessIdCache([UnsafeAccessorType("System.Environment" + CoreLib)] object? environment);

    /// <summary>Random.Shared's state for the calling thread (created if this thread had none).</summary>
    [UnsafeAccessor(UnsafeAccessorKind.StaticMethod, Name = "get_LocalRandom")]
    [return: UnsafeAccessorType(Xoshiro)]
    private static extern object SharedRandomState([UnsafeAccessorType("System.Random+ThreadSafeRandom" + CoreLib)] object? shared);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_s0")]
    private static extern ref ulong S0([UnsafeAccessorType(Xoshiro)] object state);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_s1")]
    private static extern ref ulong S1([UnsafeAccessorType(Xoshiro)] object state);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_s2")]
    private static extern ref ulong S2([UnsafeAccessorType(Xoshiro)] object state);

    [UnsafeAccessor(UnsafeAccessorKind.Field, Name = "_s3")]
    private static extern ref ulong S3([UnsafeAccessorType(Xoshiro)] object state);
}
