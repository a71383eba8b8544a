namespace TcpFork;

/// <summary>
/// The parent's side of <c>--metrics</c>: the listener (one more descriptor in the parent's epoll), the
/// shared block, and the scrape children. A scrape is accepted and handed at once to a child of its
/// own — forked in fork mode, else spawned in the metrics child role with the block's memfd — so the
/// parent never reads from or writes to a scraper. At most <see cref="MaxScrapes"/> run at once;
/// beyond that a scrape is closed at once. Scrape children are not connections: they count against
/// nothing else and appear in no counter, and the parent reaps them like any child.
/// </summary>
internal sealed unsafe class MetricsServer : IDisposable
{
    /// <summary>The tag of the metrics listener's events in the parent's epoll.</summary>
    public const ulong Tag = Poller.MetricsTag;
    public const int MaxScrapes = 4;
    /// <summary>The metrics listener's name among the descriptors an upgrade hands over (LISTEN_FDNAMES; docs/upgrade.md).</summary>
    public const string HandOverName = "tcpfork-metrics";
    private const int AcceptBatch = 8;

    private readonly Listener _listener;
    private readonly MetricsBlock _block;
    private readonly ServerLog _log;
    /// <summary>The scrape children's pids (0: a free slot), in parent-only memory: a write here copies no page a child shares.</summary>
    private readonly int* _running;
    private readonly NativeCommand? _spawnCommand;
    private readonly SpawnAttributes? _spawn;

    /// <summary>False once an upgrade has handed the listener over: the new parent serves the scrapes.</summary>
    private bool _listening = true;

    /// <summary>
    /// Binds <paramref name="address"/>, or adopts <paramref name="handedOver"/> (≥ 0: the listener an
    /// upgrade's old parent passed, see <see cref="TakeHandedOver"/>); with <paramref name="fork"/> scrape
    /// children are forked (the fork mode parent, single-threaded), else this program is spawned in the
    /// metrics child role.
    /// </summary>
    public MetricsServer(ListenAddress address, int handedOver, bool fork, TcpForkServerOptions options, ServerLog log, ParentMemory memory)
    {
        _log = log;
        _running = memory.Allocate<int>(MaxScrapes);
        var listenerOptions = new TcpForkServerOptions { KeepAlive = false, Backlog = 64 };
        _listener = handedOver >= 0 ? Listener.Adopt(handedOver, HandOverName, listenerOptions) : Listener.Open(address.Resolve()[0], listenerOptions);
        try
        {
            _block = MetricsBlock.Create();
            if (!fork)
            {
                _spawnCommand = NativeCommand.ThisProgram(remove: [SignalMask.ReexecVariable], add: [$"{ScrapeChild.RoleVariable}={ChildRole.EncodeSettings(options)}"]);
                _spawn = new SpawnAttributes();
            }
        }
        catch
        {
            _listener.Dispose();
            _block?.Dispose();
            throw;
        }
        Counters = new Counters(_block.Data);
    }

    public Counters Counters { get; }

    /// <summary>The listener's descriptor, which an upgrade passes to the new parent as <see cref="HandOverName"/>.</summary>
    public int ListenerFd => _listener.Fd.Fd;

    /// <summary>
    /// In an upgrade's new parent: the metrics listener among the descriptors passed (removed from
    /// <paramref name="passed"/>), or -1. Without <paramref name="metricsOn"/> it is closed.
    /// </summary>
    public static int TakeHandedOver(ref (int Fd, string? Name)[] passed, bool upgrade, bool metricsOn)
    {
        int i = upgrade ? Array.FindLastIndex(passed, p => p.Name == HandOverName) : -1;
        if (i < 0)
        {
            return -1;
        }
        int fd = passed[i].Fd;
        passed = [.. passed[..i], .. passed[(i + 1)..]];
        if (!metricsOn)
        {
            Interop.Close(fd);
            return -1;
        }
        return fd;
    }

    public SockAddr Address => _listener.Address;

    public string Action => _spawn is null ? "fork" : "spawn";

    public void Watch(Poller poller) => poller.Watch(_listener.Fd.Fd, Tag, on: true);

    /// <summary>The listener is readable: each waiting scrape goes to a child, or is closed when <see cref="MaxScrapes"/> run.</summary>
    public void Accept()
    {
        for (int i = 0; i < AcceptBatch && _listening; i++)
        {
            SockAddr peer = default;
            int len = SockAddr.Capacity;
            int fd = Interop.Accept4(_listener.Fd.Fd, &peer, &len, Interop.SOCK_CLOEXEC);
            if (fd < 0)
            {
                return;
            }
            peer.Length = len;
            int slot = SlotOf(0);
            if (slot < 0)
            {
                Interop.Close(fd);
                _log.ScrapesBusy(peer, MaxScrapes);
                continue;
            }
            int pid = _spawn is null ? Fork(fd, out Errno error) : Spawn(fd, out error);
            Interop.Close(fd);
            if (pid < 0)
            {
                _log.ScrapeLaunchFailed(Action, error, peer);
                return;
            }
            _running[slot] = pid;
        }
    }

    /// <summary>A reaped child that was not a connection's: true if it was a scrape child (its slot is free again).</summary>
    public bool Ended(int pid)
    {
        int slot = SlotOf(pid);
        if (slot >= 0)
        {
            _running[slot] = 0;
        }
        return slot >= 0;
    }

    /// <summary>
    /// An upgrade's hand-over: the new parent serves the scrapes on the same socket, so this one stops
    /// polling it and closes its descriptor (off epoll first: the socket stays open in the new parent).
    /// Scrape children already running finish (<see cref="Dispose"/> waits for them).
    /// </summary>
    public void HandOver(Poller poller)
    {
        if (_listening)
        {
            _listening = false;
            poller.Watch(_listener.Fd.Fd, Tag, on: false);
            _listener.Dispose();
        }
    }

    private int SlotOf(int pid) => new ReadOnlySpan<int>(_running, MaxScrapes).IndexOf(pid);

    private int Fork(int fd, out Errno error)
    {
        SigSet all, old;
        Interop.SigFillSet(&all);
        Interop.PthreadSigMask(Interop.SIG_SETMASK, &all, &old);
        _log.Flush();
        int pid = Interop.Fork();
        if (pid == 0)
        {
            ScrapeChild.RunForked(fd, _block.Fd.Fd, _log);
        }
        error = pid < 0 ? Interop.LastError : 0;
        Interop.PthreadSigMask(Interop.SIG_SETMASK, &old, null);
        return pid;
    }

    private int Spawn(int fd, out Errno error)
    {
        int pid;
        int rc = Interop.PosixSpawn(&pid, _spawnCommand!.Path, _spawn!.Connection(fd, [ScrapeChild.ConnectionFd], (_block.Fd.Fd, ScrapeChild.BlockFd)), _spawn.Attributes, _spawnCommand.Argv, _spawnCommand.Envp);
        _spawn.Done();
        error = (Errno)rc;
        return rc == 0 ? pid : -1;
    }

    /// <summary>
    /// Closes the listener; scrape children still running are killed and reaped (they hold no client's
    /// work) — after a hand-over, once they have had their timeout to finish.
    /// </summary>
    public void Dispose()
    {
        _listener.Dispose();
        long deadline = Environment.TickCount64 + (_listening ? 0 : 2 * (long)ScrapeChild.RequestTimeout.TotalMilliseconds);
        for (int i = 0; i < MaxScrapes; i++)
        {
            int pid = _running[i];
            _running[i] = 0;
            while (pid > 0 && Interop.WaitPid(pid, null, Interop.WNOHANG) == 0)
            {
                if (Environment.TickCount64 >= deadline)
                {
                    Interop.Kill(pid, Interop.SIGKILL);
                    Interop.WaitPid(pid, null, 0);
                    break;
                }
                Thread.Sleep(10); // the loop has ended: nothing else to do
            }
        }
        _block.Dispose();
        _spawnCommand?.Dispose();
        _spawn?.Dispose();
    }
}
