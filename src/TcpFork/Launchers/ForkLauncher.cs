namespace TcpFork;

/// <summary>
/// fork(2), NativeAOT only. Every signal is blocked across the fork so that nothing runs in the child
/// before it has reset its signals; the child closes the parent's descriptors, makes its runtime whole
/// (<see cref="ForkedRuntime"/>), runs the handler and always ends in _exit, never returning into the
/// parent's loop. See docs/fork-safety.md.
/// <para>
/// A <paramref name="minimal"/> child runs tcpfork's own handler (echo, or exec after setting limits),
/// which uses nothing of the runtime's state: it keeps only 0, 1, 2 and its connection, and starts no
/// thread (with TLS it keeps the runtime's descriptors too, and the exec relay starts one). Any other handler gets a child that behaves like any .NET process.
/// </para>
/// </summary>
internal sealed unsafe class ForkLauncher(ConnectionHandler handler, ServerLog log, ChildLimits limits, ImageData? image, bool minimal, bool dieWithParent, TlsServer? tls = null) : ILauncher
{
    private readonly int _parent = Interop.GetPid();

    private readonly Connection _connection = new(-1, default, log) { TlsServer = tls };

    public string Action => "fork";

    public int Launch(int fd, in Accepted connection, out Errno error)
    {
        // The finalizer thread is parked for good (ForkedRuntime.ParkFinalizer): nothing to wait for here.
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
            // A process group of its own, first thing: the parent signals the group (timeouts, drain). The
            // parent does not repeat the call (one system call per connection saved): until this line the
            // group does not exist, KillGroup then signals the child alone, and it has started nothing yet.
            Interop.SetPgid(0, 0);
            if (dieWithParent)
            {
                ChildProcess.DieWithParent(_parent);
            }
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
            // With TLS a minimal child runs the runtime's own code (SslStream, the exec relay's thread), which
            // keeps descriptors by number (its /dev/urandom): only the parent's own are closed then, as for any
            // handler, or the next socketpair would take that number and a thread's random seed read loop on it.
            if (minimal && tls is null)
            {
                Interop.CloseAllAbove2Except(fd);
            }
            else
            {
                ParentDescriptors.CloseInForkedChild(fd);
            }
            code = ChildProcess.Serve(_connection, handler, limits, minimal ? null : ForkedRuntime.Repair);
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
