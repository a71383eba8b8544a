using System.Numerics;

namespace TcpFork;

/// <summary>
/// Per-IP state for the policies: live connections and a token bucket for the rate limit, keyed by the
/// client's address (an IPv6 client by its <see cref="TcpForkServerOptions.Ipv6Prefix"/> prefix).
/// <para>
/// Arrays sized at start (8 × max-connections slots, at least 64) in parent-only memory, so nothing is
/// allocated per connection. The slots form buckets of <see cref="BucketSize"/>; a key lives only in
/// the bucket its hash picks, so a lookup reads at most <see cref="BucketSize"/> slots — bounded work per
/// accept, never a scan of the table. The hash is SipHash-1-3 keyed with 128 bits from getrandom(2) drawn
/// when the table is made (a secret per process), so a client cannot choose addresses that pile into
/// one bucket.
/// </para>
/// <para>
/// The table cannot fill up into failing open. A new key takes a free slot of its bucket; in a full
/// bucket it evicts the entry with no open connection that was active least recently (its rate state is
/// forgotten: at worst that address gets a full bucket again, which it could also get from a fresh address).
/// An entry with open connections is never evicted. Only if every slot of the bucket has open connections
/// (live entries are at most max-connections, one in 8 slots, spread by the secret hash: practically never)
/// is the new client refused — fail closed, logged (<c>warning: per-IP table …</c>) and counted
/// (<see cref="Refused"/>, in the SIGHUP <c>stats:</c> line).
/// </para>
/// </summary>
internal sealed unsafe class PeerTable
{
    /// <summary>Slots in one bucket: the most a lookup reads.</summary>
    public const int BucketSize = 16;

    private readonly UInt128* _key;
    private readonly bool* _used;
    private readonly int* _connections;
    private readonly long* _tokens;    // units: one connection = _perMs units; each ms adds Count units (exact, no rounding)
    private readonly long* _at;        // last activity (ms); also when _tokens was last brought up to date
    private readonly int _bucketMask;
    private readonly ulong _k0, _k1;
    private readonly long _perMs;
    private readonly long _count;
    private readonly long _capacity;
    private readonly bool _limited;
    private readonly int _ipv6Prefix;

    public PeerTable(int maxConnections, RateLimit? rate, ParentMemory memory, int ipv6Prefix = 128)
    {
        ArgumentNullException.ThrowIfNull(memory);
        int size = 64;
        while (size < maxConnections * 8L)
        {
            size <<= 1;
        }
        Size = size;
        _key = memory.Allocate<UInt128>(size);
        _used = memory.Allocate<bool>(size);
        _connections = memory.Allocate<int>(size);
        _tokens = memory.Allocate<long>(size);
        _at = memory.Allocate<long>(size);
        _bucketMask = (size / BucketSize) - 1;
        Span<ulong> seed = stackalloc ulong[2];
        Interop.FillRandom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(seed));
        (_k0, _k1) = (seed[0], seed[1]);
        _limited = rate is not null;
        _perMs = rate is null ? 1 : Math.Max(1, (long)rate.Per.TotalMilliseconds);
        _count = rate?.Count ?? 0;
        _capacity = _count * _perMs; // Count ≤ int.MaxValue, Per ≤ 86,400,000 ms: fits
        _ipv6Prefix = ipv6Prefix;
    }

    /// <summary>Slots in the table.</summary>
    public int Size { get; }

    /// <summary>Entries evicted to make room (none of them with an open connection).</summary>
    public long Evicted { get; private set; }

    /// <summary>New clients refused because every slot of their bucket had open connections (fail closed).</summary>
    public long Refused { get; private set; }

    /// <summary>The IP as a 16-byte address (IPv4 as <c>::ffff:a.b.c.d</c>), or false for a unix socket.</summary>
    public static bool TryAddress(in SockAddr peer, out UInt128 address)
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
            address = default;
            return false;
        }
        address = System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(b);
        return true;
    }

    /// <summary>
    /// The key a unix-socket client is counted under: <c>ff00::</c> plus its uid in the low 32 bits. That
    /// is a multicast address, which is never the source of a TCP connection (RFC 4291 2.7; the kernel
    /// drops such packets), and no IP client's key falls in <c>ff00::/16</c>: an IPv4 client's is
    /// <c>::ffff:a.b.c.d</c>, an IPv6 client's is its unicast address or that address cut to a prefix.
    /// </summary>
    public static UInt128 UidKey(uint uid) => ((UInt128)0xff00 << 112) | uid;

    /// <summary>The key the policies count under: an IPv4 address as is, an IPv6 address cut to its prefix.</summary>
    public UInt128 AccountKey(UInt128 address)
    {
        if (address >> 32 == 0xffff || _ipv6Prefix >= 128)
        {
            return address; // IPv4 (mapped) or per /128
        }
        return _ipv6Prefix == 0 ? UInt128.Zero : address & ~(UInt128.MaxValue >> _ipv6Prefix);
    }

    /// <summary>The bucket <paramref name="key"/> lives in (for tests).</summary>
    internal int Bucket(UInt128 key) => (int)(Hash(key) & (ulong)_bucketMask);

    /// <summary>The key's slot, made if need be (evicting an idle entry); -1 when its bucket is all open connections.</summary>
    public int Slot(UInt128 key, long nowMs)
    {
        int first = Bucket(key) * BucketSize;
        int free = -1, victim = -1;
        for (int i = first; i < first + BucketSize; i++)
        {
            if (!_used[i])
            {
                free = free < 0 ? i : free;
            }
            else if (_key[i] == key)
            {
                Refill(i, nowMs);
                return i;
            }
            else if (_connections[i] == 0 && (victim < 0 || _at[i] < _at[victim]))
            {
                victim = i;
            }
        }
        int slot = free >= 0 ? free : victim;
        if (slot < 0)
        {
            Refused++;
            return -1;
        }
        if (free < 0)
        {
            Evicted++;
        }
        _used[slot] = true;
        _key[slot] = key;
        _connections[slot] = 0;
        _tokens[slot] = _capacity;
        _at[slot] = nowMs;
        return slot;
    }

    /// <summary>Open connections at a slot.</summary>
    public int ConnectionsAt(int slot) => _connections[slot];

    /// <summary>Takes one token at a slot; false when the rate is exceeded.</summary>
    public bool TryTakeTokenAt(int slot)
    {
        if (!_limited)
        {
            return true;
        }
        if (_tokens[slot] < _perMs)
        {
            return false;
        }
        _tokens[slot] -= _perMs;
        return true;
    }

    /// <summary>Open connections under <paramref name="key"/> (0 when it has no entry).</summary>
    public int Connections(UInt128 key)
    {
        int slot = Lookup(key);
        return slot < 0 ? 0 : _connections[slot];
    }

    /// <summary>Takes one token from the key's bucket; false when the rate is exceeded or there is no room (fail closed).</summary>
    public bool TryTakeToken(UInt128 key, long nowMs)
    {
        int slot = Slot(key, nowMs);
        return slot >= 0 && TryTakeTokenAt(slot);
    }

    public void AddConnection(UInt128 key, long nowMs)
    {
        int slot = Slot(key, nowMs);
        if (slot >= 0)
        {
            _connections[slot]++;
        }
    }

    public void RemoveConnection(UInt128 key)
    {
        int slot = Lookup(key);
        if (slot >= 0 && _connections[slot] > 0)
        {
            _connections[slot]--;
        }
    }

    private int Lookup(UInt128 key)
    {
        int first = Bucket(key) * BucketSize;
        for (int i = first; i < first + BucketSize; i++)
        {
            if (_used[i] && _key[i] == key)
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>
    /// Brings the bucket up to <paramref name="nowMs"/>: each ms adds Count units and a connection costs
    /// Per-in-ms units, so the refill is exact — a client retrying faster than one token's worth of time
    /// still accumulates its share (the clock never skips a remainder).
    /// </summary>
    private void Refill(int slot, long nowMs)
    {
        long elapsed = nowMs - _at[slot];
        if (elapsed > 0)
        {
            _tokens[slot] = elapsed >= _perMs ? _capacity : Math.Min(_capacity, _tokens[slot] + (elapsed * _count));
            _at[slot] = nowMs;
        }
    }

    /// <summary>SipHash-1-3 of the 16-byte key under the table's secret seed.</summary>
    private ulong Hash(UInt128 key)
    {
        ulong v0 = _k0 ^ 0x736f6d6570736575UL, v1 = _k1 ^ 0x646f72616e646f6dUL;
        ulong v2 = _k0 ^ 0x6c7967656e657261UL, v3 = _k1 ^ 0x7465646279746573UL;
        Compress((ulong)key, ref v0, ref v1, ref v2, ref v3);
        Compress((ulong)(key >> 64), ref v0, ref v1, ref v2, ref v3);
        Compress(16UL << 56, ref v0, ref v1, ref v2, ref v3);
        v2 ^= 0xff;
        Round(ref v0, ref v1, ref v2, ref v3);
        Round(ref v0, ref v1, ref v2, ref v3);
        Round(ref v0, ref v1, ref v2, ref v3);
        return v0 ^ v1 ^ v2 ^ v3;

        static void Compress(ulong m, ref ulong v0, ref ulong v1, ref ulong v2, ref ulong v3)
        {
            v3 ^= m;
            Round(ref v0, ref v1, ref v2, ref v3);
            v0 ^= m;
        }

        static void Round(ref ulong v0, ref ulong v1, ref ulong v2, ref ulong v3)
        {
            v0 += v1; v1 = BitOperations.RotateLeft(v1, 13); v1 ^= v0; v0 = BitOperations.RotateLeft(v0, 32);
            v2 += v3; v3 = BitOperations.RotateLeft(v3, 16); v3 ^= v2;
            v0 += v3; v3 = BitOperations.RotateLeft(v3, 21); v3 ^= v0;
            v2 += v1; v1 = BitOperations.RotateLeft(v1, 17); v1 ^= v2; v2 = BitOperations.RotateLeft(v2, 32);
        }
    }
}
