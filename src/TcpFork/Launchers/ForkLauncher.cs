namespace TcpFork;

/// <summary>
/// fork(2), NativeAOT only. Every signal is blocked across the fork so that nothing runs in the child
/// before it has reset its signals; the child runs the handler and always ends in _exit, never
/// returning into the parent's loop. See docs/fork-safety.md.
/// </summary>
internal sealed unsafe class ForkLauncher(ConnectionHandler handler, ServerLog log, ChildLimits limits, ImageData? image) : ILauncher
{
    private readonly Connection _connection = new(-1, default, log);
    private int _collections = -1;

    public string Name => "fork";

    public int Launch(int fd, in Accepted connection, out Errno error)
    {
        // The loop allocates nothing, so no GC runs and the finalizer thread stays idle. If one did run
        // (a hook that allocates), wait until the finalizer thread is idle again: a child forked while it
        // runs would hang at its first GC, waiting for a thread it does not have.
        int collections = GC.CollectionCount(0);
        if (collections != _collections)
        {
            GC.WaitForPendingFinalizers();
            _collections = GC.CollectionCount(0);
        }
        // At connections 1, 2, 4, 8, …: keep the image's data out of what fork() copies (see ImageData).
        long n = connection.Number;
        if (image is not null && (n & (n - 1)) == 0 && image.HasPrivatePages())
        {
            image.Move();
        }
        SigSet all, old;
        Interop.SigFillSet(&all);
        Interop.PthreadSigMask(Interop.SIG_SETMASK, &all, &old);
        log.Flush();
        int pid = Interop.Fork();
        if (pid == 0)
        {
            // Filled in by the child: a write by the parent would leave each live child a private copy of the page.
            _connection.Reset(fd, connection);
            RunChild(fd);
        }
        error = pid < 0 ? Interop.LastError : 0;
        Interop.PthreadSigMask(Interop.SIG_SETMASK, &old, null);
        return pid;
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void RunChild(int fd)
    {
        int code = 1;
        try
        {
            // The listeners, epoll and signalfd are the parent's: the child keeps 0, 1, 2 and its connection.
            Interop.CloseAllAbove2Except(fd);
            code = ChildProcess.Serve(_connection, handler, limits);
        }
        finally
        {
            log.Flush();
            Interop.Exit(code);
        }
        throw new InvalidOperationException("unreachable: _exit returned");
    }

    public void Dispose() => image?.Dispose();
}
