namespace TcpFork;

/// <summary>
/// fork(2), NativeAOT only. Every signal is blocked across the fork so that nothing runs in the child
/// before it has reset its signals; the child runs the handler and always ends in _exit, never
/// returning into the parent's loop. See docs/fork-safety.md.
/// </summary>
internal sealed unsafe class ForkLauncher(ConnectionHandler handler, ServerLog log, ChildLimits limits) : ILauncher
{
    public string Name => "fork";

    public int Launch(int fd, in Accepted connection, out Errno error)
    {
        SigSet all, old;
        Interop.SigFillSet(&all);
        Interop.PthreadSigMask(Interop.SIG_SETMASK, &all, &old);
        log.Flush();
        int pid = Interop.Fork();
        if (pid == 0)
        {
            RunChild(fd, connection);
        }
        error = pid < 0 ? Interop.LastError : 0;
        Interop.PthreadSigMask(Interop.SIG_SETMASK, &old, null);
        return pid;
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void RunChild(int fd, Accepted connection)
    {
        int code = 1;
        try
        {
            // The listeners, epoll and signalfd are the parent's: the child keeps 0, 1, 2 and its connection.
            Interop.CloseAllAbove2Except(fd);
            code = ChildProcess.Serve(new Connection(fd, connection, log), handler, limits);
        }
        finally
        {
            log.Flush();
            Interop.Exit(code);
        }
        throw new InvalidOperationException("unreachable: _exit returned");
    }

    public void Dispose()
    {
    }
}
