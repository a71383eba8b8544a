namespace TcpFork;

/// <summary>
/// What every child does, forked or spawned: reset signals, then run the handler and turn its outcome
/// into an exit code. (Descriptors are closed by the launcher: by posix_spawn before exec, or by the
/// fork child itself; never here, where a JIT runtime already has descriptors of its own open.)
/// </summary>
internal static unsafe class ChildProcess
{
    /// <summary>
    /// Prepares this process and runs <paramref name="handler"/>; returns the exit code.
    /// <paramref name="afterSignals"/> runs once the signal mask is reset, so threads it starts inherit
    /// an empty mask (a forked child's runtime repair).
    /// </summary>
    public static int Serve(Connection connection, ConnectionHandler handler, ChildLimits limits, Action? afterSignals = null)
    {
        ResetSignals();
        ServerLog log = connection.Log;
        log.Discard();
        try
        {
            afterSignals?.Invoke();
            if (!ExecHandler.Is(handler))
            {
                limits.Apply(managedHandler: true); // a program is given its limits by ExecHandler, just before exec
            }
            if (!connection.StartTls())
            {
                return 1;
            }
            return handler(connection);
        }
        catch (OutOfMemoryException) when (limits.AddressSpace is long bytes)
        {
            log.MemoryLimitExceeded(bytes);
            return 1;
        }
#pragma warning disable CA1031 // A child reports any failure as its exit status; the parent logs it.
        catch (Exception e)
#pragma warning restore CA1031
        {
            log.HandlerFailed(e);
            return 1;
        }
    }

    /// <summary>
    /// <see cref="TcpForkServerOptions.DieWithParent"/>: SIGKILL when <paramref name="parent"/> (the thread
    /// that made this process) ends. It survives exec. The parent may have died before the call, and then
    /// no signal comes: prctl(2) says to compare getppid() afterwards, so a child whose parent is already
    /// gone (it was reparented) kills itself here. Nothing allocates: a forked child calls it first thing.
    /// </summary>
    public static void DieWithParent(int parent)
    {
        Interop.Prctl(Interop.PR_SET_PDEATHSIG, Interop.SIGKILL, 0, 0, 0);
        if (Interop.GetPPid() != parent)
        {
            Interop.Kill(Interop.GetPid(), Interop.SIGKILL);
        }
    }

    /// <summary>
    /// Undoes what the parent set up for itself: its blocked signals (signalfd needs them blocked, and a
    /// blocked mask would survive even an exec) and any disposition. SIGPIPE stays ignored, as in every
    /// .NET process, so a write to a closed connection is an EPIPE error, not a silent death.
    /// </summary>
    public static void ResetSignals()
    {
        Interop.Signal(Interop.SIGHUP, Interop.SIG_DFL);
        Interop.Signal(Interop.SIGINT, Interop.SIG_DFL);
        Interop.Signal(Interop.SIGQUIT, Interop.SIG_DFL);
        Interop.Signal(Interop.SIGTERM, Interop.SIG_DFL);
        Interop.Signal(Interop.SIGCHLD, Interop.SIG_DFL);
        Interop.Signal(Interop.SIGUSR2, Interop.SIG_DFL);
        Interop.Signal(Interop.SIGPIPE, Interop.SIG_IGN);
        SigSet none;
        Interop.SigEmptySet(&none);
        Interop.PthreadSigMask(Interop.SIG_SETMASK, &none, null);
    }
}
