namespace TcpFork;

/// <summary>
/// The running children: pid, peer, start time and the parent's copy of the connection, one slot each,
/// preallocated for the connection limit (as s6-tcpserverd does) in <see cref="ParentMemory"/>, so adding
/// and removing a child never allocates and never touches memory a child shares. A pid → slot map with
/// linear probing finds a child on SIGCHLD. The kept connections (idle timeout only) are the one
/// column in memory children share: a forked child closes them (<see cref="ParentDescriptors"/>).
/// </summary>
internal sealed unsafe class ChildTable
{
    private struct Slot
    {
        public int Pid;
        public long Started;
        public long SignalledAt;
        public SockAddr Peer;
    }

    private readonly Slot* _slots;
    private readonly int* _fds; // null unless connections are kept
    private readonly int* _free;
    private readonly int* _counts; // [0] children, [1] free slots: in parent-only memory, as they change per connection
    private ref int FreeCount => ref _counts[1];
    private readonly int* _mapPid;   // 0 = empty
    private readonly int* _mapSlot;
    private readonly int _mapMask;

    public ChildTable(int capacity, ParentMemory memory, bool keepConnections)
    {
        Capacity = capacity;
        _slots = memory.Allocate<Slot>(capacity);
        if (keepConnections)
        {
            _fds = memory.AllocateShared<int>(capacity);
            new Span<int>(_fds, capacity).Fill(-1);
            ParentDescriptors.TrackKeptConnections(_fds, capacity);
        }
        _free = memory.Allocate<int>(capacity);
        for (int i = 0; i < capacity; i++)
        {
            _free[i] = capacity - 1 - i;
        }
        _counts = memory.Allocate<int>(2);
        FreeCount = capacity;
        int size = 16;
        while (size < capacity * 2)
        {
            size <<= 1;
        }
        _mapPid = memory.Allocate<int>(size);
        _mapSlot = memory.Allocate<int>(size);
        _mapMask = size - 1;
    }

    public int Count => _counts[0];

    public int Capacity { get; }

    public bool IsFull => FreeCount == 0;

    /// <summary>Records a child; <paramref name="fd"/> is the parent's copy of its connection, or -1.</summary>
    public void Add(int pid, in SockAddr peer, long startedMs, int fd)
    {
        int slot = _free[--FreeCount];
        Slot* s = _slots + slot;
        s->Pid = pid;
        if (_fds != null)
        {
            _fds[slot] = fd;
        }
        s->Started = startedMs;
        s->SignalledAt = 0;
        s->Peer = peer;
        int i = Hash(pid);
        while (_mapPid[i] != 0)
        {
            i = (i + 1) & _mapMask;
        }
        _mapPid[i] = pid;
        _mapSlot[i] = slot;
        _counts[0]++;
    }

    /// <summary>Removes <paramref name="pid"/>; false if it is not one of ours.</summary>
    public bool Remove(int pid, out SockAddr peer, out int fd, out long startedMs, out bool signalled)
    {
        int i = Hash(pid);
        while (_mapPid[i] != pid)
        {
            if (_mapPid[i] == 0)
            {
                peer = default;
                fd = -1;
                startedMs = 0;
                signalled = false;
                return false;
            }
            i = (i + 1) & _mapMask;
        }
        int slot = _mapSlot[i];
        DeleteAt(i);
        Slot* s = _slots + slot;
        peer = s->Peer;
        fd = -1;
        if (_fds != null)
        {
            fd = _fds[slot];
            _fds[slot] = -1;
        }
        startedMs = s->Started;
        signalled = s->SignalledAt != 0;
        s->Pid = 0;
        _free[FreeCount++] = slot;
        _counts[0]--;
        return true;
    }

    /// <summary>Linear-probing deletion without tombstones: shift back the entries that probed past the hole.</summary>
    private void DeleteAt(int hole)
    {
        _mapPid[hole] = 0;
        for (int i = (hole + 1) & _mapMask; _mapPid[i] != 0; i = (i + 1) & _mapMask)
        {
            int home = Hash(_mapPid[i]);
            bool movable = hole <= i ? home <= hole || home > i : home <= hole && home > i;
            if (movable)
            {
                _mapPid[hole] = _mapPid[i];
                _mapSlot[hole] = _mapSlot[i];
                _mapPid[i] = 0;
                hole = i;
            }
        }
    }

    private int Hash(int pid) => (int)((uint)pid * 2654435769u >> 8) & _mapMask;

    /// <summary>The pid in <paramref name="slot"/> (0 when free), for a scan over every slot.</summary>
    public int PidAt(int slot) => _slots[slot].Pid;

    public long StartedAt(int slot) => _slots[slot].Started;

    public int FdAt(int slot) => _fds == null ? -1 : _fds[slot];

    /// <summary>When the parent sent this child SIGTERM for a timeout (0: never; -1: SIGKILL sent too).</summary>
    public ref long SignalledAt(int slot) => ref _slots[slot].SignalledAt;

    /// <summary>Sends <paramref name="signal"/> to every child's process group; returns how many were signalled.</summary>
    public int SignalAll(int signal)
    {
        int n = 0;
        for (int slot = 0; slot < Capacity; slot++)
        {
            int pid = _slots[slot].Pid;
            if (pid > 0 && Interop.KillGroup(pid, signal) == 0)
            {
                n++;
            }
        }
        return n;
    }
}
