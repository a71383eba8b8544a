namespace TcpFork;

/// <summary>
/// The parent's one wait: epoll over the listeners and a signalfd. The signals the parent handles
/// (CHLD, TERM, INT, HUP) are blocked in every thread and read here as data, never delivered to a
/// handler (docs/fork-safety.md, invariant 2). Buffers are in parent-only memory, allocated once.
/// </summary>
internal sealed unsafe class Poller : IDisposable
{
    // Every epoll tag, in one place: a listener's is its index (below 2^32), a connection waiting for its
    // PROXY header's is ProxySlotTag | its slot, and each fixed descriptor has one of its own at the top.

    /// <summary>The tag of the signalfd's events.</summary>
    public const ulong SignalTag = ulong.MaxValue;
    /// <summary>The tag of the <c>--metrics</c> listener's events.</summary>
    public const ulong MetricsTag = ulong.MaxValue - 1;
    /// <summary>The tag of an upgrade's readiness pipe (the new parent's one byte).</summary>
    public const ulong UpgradeTag = ulong.MaxValue - 2;
    /// <summary>Set in the tag of a connection waiting for its PROXY header; the low 32 bits are its slot.</summary>
    public const ulong ProxySlotTag = 1UL << 32;

    public static bool IsProxySlot(ulong tag) => tag >> 32 == 1;
    private const int MaxEvents = 32;
    private const int SignalBatch = 8;

    private readonly SafeFd _epoll;
    private readonly SafeFd _signals;
    private readonly byte* _events;
    private readonly byte* _signalInfo;
    private int _signalCount, _signalNext;

    public Poller(ParentMemory memory)
    {
        _events = memory.Allocate<byte>(MaxEvents * EpollEvent.MaxSize);
        _signalInfo = memory.Allocate<byte>(SignalBatch * Interop.SignalFdInfoSize);
        SigSet set = SignalMask.HandledSet();
        SignalMask.Block();
        _signals = new SafeFd((int)Interop.Check(Interop.SignalFd(-1, &set, Interop.SFD_NONBLOCK | Interop.SFD_CLOEXEC), "signalfd"));
        _epoll = new SafeFd((int)Interop.Check(Interop.EpollCreate1(Interop.EPOLL_CLOEXEC), "epoll_create1"));
        Watch(_signals.Fd, SignalTag, on: true);
    }

    /// <summary>Adds (or removes) <paramref name="fd"/>, whose readiness is reported with <paramref name="tag"/>.</summary>
    public void Watch(int fd, ulong tag, bool on) => Interop.Check(Control(fd, tag, on, Interop.EPOLLIN), "epoll_ctl");

    /// <summary>Adds (or removes) a connection for <paramref name="events"/>; false when epoll_ctl failed (ENOMEM, ENOSPC: the caller closes it).</summary>
    public bool TryWatch(int fd, ulong tag, bool on, uint events) => Control(fd, tag, on, events) == 0;

    private int Control(int fd, ulong tag, bool on, uint events)
    {
        byte* ev = stackalloc byte[EpollEvent.MaxSize];
        EpollEvent.Write(ev, events, tag);
        return Interop.EpollCtl(_epoll.Fd, on ? Interop.EPOLL_CTL_ADD : Interop.EPOLL_CTL_DEL, fd, ev);
    }

    /// <summary>Waits up to <paramref name="timeoutMs"/> (-1: no limit); returns how many events <see cref="TagAt"/> can read.</summary>
    public int Wait(int timeoutMs)
    {
        int n;
        while (Interop.Retry(n = Interop.EpollWait(_epoll.Fd, _events, MaxEvents, timeoutMs))) { }
        if (n < 0)
        {
            Interop.Throw("epoll_wait");
        }
        return n;
    }

    public ulong TagAt(int index) => EpollEvent.DataAt(_events, index);

    public uint EventsAt(int index) => EpollEvent.EventsAt(_events, index);

    /// <summary>The next pending signal's number, or 0 when none is left (after a <see cref="SignalTag"/> event).</summary>
    public int NextSignal()
    {
        if (_signalNext == _signalCount)
        {
            nint n = Interop.Read(_signals.Fd, _signalInfo, SignalBatch * Interop.SignalFdInfoSize);
            _signalCount = n > 0 ? (int)(n / Interop.SignalFdInfoSize) : 0;
            _signalNext = 0;
            if (_signalCount == 0)
            {
                return 0;
            }
        }
        return *(int*)(_signalInfo + (_signalNext++ * Interop.SignalFdInfoSize));
    }

    public void Dispose()
    {
        _epoll.Dispose();
        _signals.Dispose();
    }
}
