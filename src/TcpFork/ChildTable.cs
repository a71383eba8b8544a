namespace TcpFork;

/// <summary>
/// The running children: pid, peer and start time, in slots preallocated for the connection limit
/// (as s6-tcpserverd does), so adding and removing a child never allocates.
/// </summary>
internal sealed class ChildTable
{
    private readonly int[] _pid;
    private readonly SockAddr[] _peer;
    private readonly long[] _started;
    private readonly int[] _fd;
    private readonly long[] _signalledAt;
    private readonly int[] _free;
    private int _freeCount;
    private readonly Dictionary<int, int> _slotOf;

    public ChildTable(int capacity)
    {
        _pid = new int[capacity];
        _peer = new SockAddr[capacity];
        _started = new long[capacity];
        _fd = new int[capacity];
        _signalledAt = new long[capacity];
        _free = new int[capacity];
        for (int i = 0; i < capacity; i++)
        {
            _free[i] = capacity - 1 - i;
        }
        _freeCount = capacity;
        _slotOf = new Dictionary<int, int>(capacity);
    }

    public int Count => _slotOf.Count;

    public int Capacity => _pid.Length;

    public bool IsFull => _freeCount == 0;

    /// <summary>Records a child; <paramref name="fd"/> is the parent's copy of its connection, or -1.</summary>
    public void Add(int pid, in SockAddr peer, long startedMs, int fd)
    {
        int slot = _free[--_freeCount];
        _pid[slot] = pid;
        _peer[slot] = peer;
        _started[slot] = startedMs;
        _fd[slot] = fd;
        _signalledAt[slot] = 0;
        _slotOf.Add(pid, slot);
    }

    /// <summary>Removes <paramref name="pid"/>; false if it is not one of ours.</summary>
    public bool Remove(int pid, out SockAddr peer, out int fd, out long startedMs)
    {
        if (!_slotOf.Remove(pid, out int slot))
        {
            peer = default;
            fd = -1;
            startedMs = 0;
            return false;
        }
        peer = _peer[slot];
        fd = _fd[slot];
        startedMs = _started[slot];
        _pid[slot] = 0;
        _free[_freeCount++] = slot;
        return true;
    }

    /// <summary>The pid in <paramref name="slot"/> (0 when free), for a scan over every slot.</summary>
    public int PidAt(int slot) => _pid[slot];

    public long StartedAt(int slot) => _started[slot];

    public int FdAt(int slot) => _fd[slot];

    /// <summary>When the parent sent this child SIGTERM for a timeout (0: never).</summary>
    public ref long SignalledAt(int slot) => ref _signalledAt[slot];

    /// <summary>Sends <paramref name="signal"/> to every child; returns how many were signalled.</summary>
    public int SignalAll(int signal)
    {
        int n = 0;
        foreach (int pid in _pid)
        {
            if (pid > 0 && Interop.Kill(pid, signal) == 0)
            {
                n++;
            }
        }
        return n;
    }
}
