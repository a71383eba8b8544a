namespace TcpFork;

/// <summary>
/// The parent reads CHLD, TERM, INT, HUP and USR2 from a signalfd, which only works if no thread of the
/// process leaves them unblocked: a process-directed signal goes to any thread that does not block
/// it, and SIGTERM's default action there ends the whole process. The runtime starts threads of its
/// own (NativeAOT's finalizer) before Main, with the mask they inherited from the exec'ing process.
/// So when some thread does not block them, the parent blocks them and executes itself again, once:
/// a signal mask survives execve(2), and every runtime thread is then born with it. Same pid, same
/// arguments, same descriptors — and Main runs a second time. Only spawn mode needs this (a JIT runtime
/// has threads nobody else can reach): a fork-mode parent has one other thread, the finalizer, which
/// blocks the signals itself when it is parked (ForkedRuntime.ParkFinalizer).
/// </summary>
internal static unsafe class SignalMask
{
    public const string ReexecVariable = "TCPFORK_SIGNALS_BLOCKED";

    /// <summary>The signals the parent handles, as a SigBlk bit mask.</summary>
    private const ulong Handled = (1UL << (Interop.SIGCHLD - 1)) | (1UL << (Interop.SIGTERM - 1))
                                | (1UL << (Interop.SIGINT - 1)) | (1UL << (Interop.SIGHUP - 1)) | (1UL << (Interop.SIGUSR2 - 1));

    /// <summary>
    /// Returns when every thread blocks the parent's signals; otherwise re-executes this program with
    /// them blocked (and does not return). Returns the name of a thread that still does not block them
    /// after a re-exec, or null.
    /// </summary>
    public static string? EnsureBlockedEverywhere()
    {
        string? open = FirstThreadNotBlocking();
        bool again = Environment.GetEnvironmentVariable(ReexecVariable) is not null;
        Environment.SetEnvironmentVariable(ReexecVariable, null);
        if (open is null || again)
        {
            return open;
        }
        Block();
        using NativeCommand self = NativeCommand.ThisProgram([ReexecVariable], [$"{ReexecVariable}=1"]);
        Interop.Execve(self.Path, self.Argv, self.Envp);
        throw Interop.Error("execve");
    }

    /// <summary>The signals the parent handles, through its signalfd: CHLD, TERM, INT, HUP, USR2 (an upgrade).</summary>
    public static SigSet HandledSet()
    {
        SigSet set;
        Interop.SigEmptySet(&set);
        foreach (int signal in (ReadOnlySpan<int>)[Interop.SIGCHLD, Interop.SIGTERM, Interop.SIGINT, Interop.SIGHUP, Interop.SIGUSR2])
        {
            Interop.SigAddSet(&set, signal);
        }
        return set;
    }

    /// <summary>
    /// At the end of Run(): signals that arrive after the last signalfd read must not end a process that
    /// has drained cleanly (unblocked, a late TERM or HUP would exit 143 or 129). So they stay blocked in
    /// this thread, and those already pending are discarded (setting SIG_IGN does that, blocked or not),
    /// so a program that unblocks them later does not receive stale ones. Run() documents this.
    /// </summary>
    public static void DiscardPending()
    {
        foreach (int signal in (ReadOnlySpan<int>)[Interop.SIGCHLD, Interop.SIGTERM, Interop.SIGINT, Interop.SIGHUP, Interop.SIGUSR2])
        {
            Interop.Signal(signal, Interop.SIG_IGN);
            Interop.Signal(signal, Interop.SIG_DFL);
        }
    }

    /// <summary>
    /// Blocks the parent's signals in the calling thread, and makes sure none is ignored: an ignored
    /// signal is discarded before a signalfd can see it, and a shell starts background jobs with
    /// SIGINT and SIGQUIT ignored.
    /// </summary>
    public static void Block()
    {
        SigSet set = HandledSet();
        Interop.PthreadSigMask(Interop.SIG_BLOCK, &set, null);
        // Blocked first, so a default disposition cannot act in between.
        Interop.Signal(Interop.SIGCHLD, Interop.SIG_DFL);
        Interop.Signal(Interop.SIGTERM, Interop.SIG_DFL);
        Interop.Signal(Interop.SIGINT, Interop.SIG_DFL);
        Interop.Signal(Interop.SIGHUP, Interop.SIG_DFL);
        Interop.Signal(Interop.SIGUSR2, Interop.SIG_DFL);
    }

    /// <summary>The name of a thread of this process that leaves one of the handled signals unblocked, or null.</summary>
    public static string? FirstThreadNotBlocking()
    {
        foreach (string task in Directory.GetDirectories("/proc/self/task"))
        {
            ulong blocked;
            try
            {
                blocked = ProcStatus.HexField(Path.Combine(task, "status"), "SigBlk") ?? 0;
            }
            catch (IOException)
            {
                continue; // the thread ended
            }
            if ((blocked & Handled) != Handled)
            {
                return File.ReadAllText(Path.Combine(task, "comm")).Trim();
            }
        }
        return null;
    }
}
