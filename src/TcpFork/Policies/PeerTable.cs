namespace TcpFork;

/// <summary>
/// Per-IP state for the policies: live connections and a token bucket for the rate limit. Open
/// addressing over arrays sized at start, so a lookup never allocates; entries with no connection and
/// a full bucket are swept out when the table fills.
/// </summary>
internal sealed unsafe class PeerTable
{
    private const long Scale = 1000; // tokens in thousandths
    private readonly UInt128* _key;
    private readonly bool* _used;
    private readonly int* _connections;
    private readonly long* _tokens;
    private readonly long* _refilledAt;
    private readonly int _mask;
    private readonly int _size;

    // Scratch for Sweep, allocated with the table (parent-only memory, not resident until used), so even
    // the rare rebuild allocates nothing on the parent's thread (docs/fork-safety.md, invariant 3).
    private readonly UInt128* _sweepKey;
    private readonly int* _sweepConnections;
    private readonly long* _sweepTokens;
    private readonly long* _sweepRefilledAt;
    private bool _sweeping;
    private int _count;
    private readonly RateLimit? _rate;

    public PeerTable(int maxConnections, RateLimit? rate, ParentMemory memory)
    {
        int size = 64;
        while (size < maxConnections * 4)
        {
            size <<= 1;
        }
        _key = memory.Allocate<UInt128>(size);
        _used = memory.Allocate<bool>(size);
        _connections = memory.Allocate<int>(size);
        _tokens = memory.Allocate<long>(size);
        _refilledAt = memory.Allocate<long>(size);
        _sweepKey = memory.Allocate<UInt128>(size);
        _sweepConnections = memory.Allocate<int>(size);
        _sweepTokens = memory.Allocate<long>(size);
        _sweepRefilledAt = memory.Allocate<long>(size);
        _size = size;
        _mask = size - 1;
        _rate = rate;
    }

    /// <summary>The IP as a 16-byte key (IPv4 mapped into IPv6), or false for a unix socket.</summary>
    public static bool TryKey(in SockAddr peer, out UInt128 key)
    {
        Span<byte> b = stackalloc byte[16];
        ReadOnlySpan<byte> a = peer.AddressBytes;
        if (peer.Family == Interop.AF_INET)
        {
            b.Clear();
            b[10] = b[11] = 0xff;
            a.CopyTo(b[12..]);
        }
        else if (peer.Family == Interop.AF_INET6)
        {
            a.CopyTo(b);
        }
        else
        {
            key = default;
            return false;
        }
        key = System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(b);
        return true;
    }

    public int Connections(UInt128 key)
    {
        int slot = Find(key, insert: false, 0);
        return slot < 0 ? 0 : _connections[slot];
    }

    /// <summary>Takes one token from the key's bucket; false when the rate is exceeded.</summary>
    public bool TryTakeToken(UInt128 key, long nowMs)
    {
        if (_rate is null)
        {
            return true;
        }
        int slot = Find(key, insert: true, nowMs);
        if (slot < 0)
        {
            return true; // table full of live peers: fail open rather than refuse service
        }
        long capacity = _rate.Count * Scale;
        long perMs = (long)_rate.Per.TotalMilliseconds;
        long refill = (nowMs - _refilledAt[slot]) * capacity / Math.Max(1, perMs);
        _tokens[slot] = Math.Min(capacity, _tokens[slot] + refill);
        _refilledAt[slot] = nowMs;
        if (_tokens[slot] < Scale)
        {
            return false;
        }
        _tokens[slot] -= Scale;
        return true;
    }

    public void AddConnection(UInt128 key, long nowMs)
    {
        int slot = Find(key, insert: true, nowMs);
        if (slot >= 0)
        {
            _connections[slot]++;
        }
    }

    public void RemoveConnection(UInt128 key)
    {
        int slot = Find(key, insert: false, 0);
        if (slot >= 0 && _connections[slot] > 0)
        {
            _connections[slot]--;
        }
    }

    private int Find(UInt128 key, bool insert, long nowMs)
    {
        int start = (int)((ulong)(key ^ (key >> 64)) * 0x9E3779B97F4A7C15UL >> 40) & _mask;
        for (int i = start, n = 0; n <= _mask; i = (i + 1) & _mask, n++)
        {
            if (!_used[i])
            {
                if (!insert)
                {
                    return -1;
                }
                if (!_sweeping && _count * 4 >= _size * 3 && Sweep(nowMs))
                {
                    return Find(key, insert, nowMs);
                }
                _used[i] = true;
                _key[i] = key;
                _connections[i] = 0;
                _tokens[i] = (_rate?.Count ?? 0) * Scale;
                _refilledAt[i] = nowMs;
                _count++;
                return i;
            }
            if (_key[i] == key)
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>Rebuilds the table without idle peers whose bucket has refilled; true if it freed any.</summary>
    private bool Sweep(long nowMs)
    {
        long window = _rate is null ? 0 : (long)_rate.Per.TotalMilliseconds;
        int kept = 0;
        for (int i = 0; i < _size; i++)
        {
            if (_used[i] && (_connections[i] > 0 || nowMs - _refilledAt[i] < window))
            {
                _sweepKey[kept] = _key[i];
                _sweepConnections[kept] = _connections[i];
                _sweepTokens[kept] = _tokens[i];
                _sweepRefilledAt[kept] = _refilledAt[i];
                kept++;
            }
        }
        if (kept == _count)
        {
            return false;
        }
        // Put the survivors back at their probe positions in the emptied table (no nested sweep meanwhile).
        new Span<bool>(_used, _size).Clear();
        _count = 0;
        _sweeping = true;
        for (int k = 0; k < kept; k++)
        {
            int slot = Find(_sweepKey[k], insert: true, nowMs);
            _connections[slot] = _sweepConnections[k];
            _tokens[slot] = _sweepTokens[k];
            _refilledAt[slot] = _sweepRefilledAt[k];
        }
        _sweeping = false;
        return true;
    }
}
