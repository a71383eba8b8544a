namespace TcpFork;

/// <summary>
/// The allow/deny rules made for lookup: the same answer as reading the list in order and taking the
/// first rule that matches (<see cref="Find"/> returns that rule's index), at a cost that does not grow
/// with the number of rules. Built once per load or SIGHUP reload, never per connection; a lookup
/// allocates nothing.
/// <para>
/// One open-addressing hash table holds every network rule under (network, prefix length), with the
/// lowest index among rules written for the same network. A lookup masks the client's 128-bit address
/// to each prefix length that some rule uses and probes once per length: at most 129 probes, whatever
/// the number of rules. The lengths are tried in the order of the lowest rule index each holds, so the
/// search stops as soon as no remaining length can hold a rule earlier than the one found. IPv4
/// clients (<c>::ffff:a.b.c.d</c>) skip every length below 96: a rule shorter than /96 is outside the
/// mapped range and never matches them (see <see cref="AccessRule"/>); at /96 or longer a rule matches a
/// mapped address only if it is itself in the mapped range, which the probe checks by itself.
/// </para>
/// <para>
/// Uid rules (unix-socket clients, <see cref="FindUid"/>) are kept apart, in order, and never match an address.
/// </para>
/// <para>
/// The index keeps what the policy needs of each rule — allow or deny, and its text for the deny log —
/// so the <see cref="AccessRule"/> objects are garbage once it is built. All of it lives in
/// <see cref="ParentMemory"/> (MADV_WIPEONFORK), none in the GC heap: fork() copies no page-table entry
/// for it however many rules there are, and <see cref="Dispose"/> returns it when a reload replaces it.
/// The hash is keyed with a per-process secret, so a client cannot pick addresses that walk long probe chains.
/// </para>
/// </summary>
internal sealed unsafe class RuleIndex : IDisposable
{
    private struct Entry
    {
        public UInt128 Network;
        public int Bits;
        public int Index; // rule index + 1; 0 is an empty slot
    }

    private struct UidRange
    {
        public uint Low, High;
        public int Index;
    }

    private struct Length
    {
        public UInt128 Mask;
        public int Bits;
        public int Lowest; // the lowest rule index at this length
    }

    private readonly ParentMemory _memory;
    private readonly Entry* _entries;
    private readonly int _mask;
    private readonly Length* _lengths;
    private readonly int _lengthCount;
    private readonly ulong _seed;
    private readonly bool* _allow;
    private readonly int* _textStart; // Count + 1 offsets into _text
    private readonly byte* _text;     // every rule's text, UTF-8, one after the other
    private readonly UidRange* _uids; // the uid rules, in order
    private readonly int _uidCount;

    public RuleIndex(IReadOnlyList<AccessRule> rules, ParentMemory memory)
    {
        ArgumentNullException.ThrowIfNull(rules);
        _memory = memory ?? throw new ArgumentNullException(nameof(memory));
        Span<ulong> seed = stackalloc ulong[1];
        Interop.FillRandom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(seed));
        _seed = seed[0];
        Count = rules.Count;
        _allow = memory.Allocate<bool>(rules.Count);
        _textStart = memory.Allocate<int>(rules.Count + 1);
        long textBytes = 0;
        foreach (AccessRule rule in rules)
        {
            textBytes += System.Text.Encoding.UTF8.GetByteCount(rule.Text);
        }
        _text = memory.Allocate<byte>((int)Math.Min(textBytes, int.MaxValue));

        int capacity = 16;
        while (capacity < rules.Count * 2L)
        {
            capacity <<= 1;
        }
        _mask = capacity - 1;
        _entries = memory.Allocate<Entry>(capacity);
        Span<int> lowest = stackalloc int[129];
        lowest.Fill(int.MaxValue);
        for (int i = 0; i < rules.Count; i++)
        {
            AccessRule rule = rules[i];
            _allow[i] = rule.Allow;
            _textStart[i + 1] = _textStart[i] + System.Text.Encoding.UTF8.GetBytes(rule.Text, new Span<byte>(_text + _textStart[i], (int)textBytes - _textStart[i]));
            if (rule.IsUid)
            {
                _uidCount++;
                continue;
            }
            Insert(rule.Network, rule.Bits, i);
            lowest[rule.Bits] = Math.Min(lowest[rule.Bits], i);
        }

        _uids = memory.Allocate<UidRange>(_uidCount);
        for (int i = 0, u = 0; i < rules.Count; i++)
        {
            if (rules[i].IsUid)
            {
                _uids[u++] = new UidRange { Low = rules[i].UidLow, High = rules[i].UidHigh, Index = i };
            }
        }

        _lengths = memory.Allocate<Length>(129);
        for (int bits = 0; bits <= 128; bits++)
        {
            if (lowest[bits] != int.MaxValue)
            {
                _lengths[_lengthCount++] = new Length { Bits = bits, Mask = MaskOf(bits), Lowest = lowest[bits] };
            }
        }
        new Span<Length>(_lengths, _lengthCount).Sort(static (a, b) => a.Lowest.CompareTo(b.Lowest));
    }

    /// <summary>How many rules.</summary>
    public int Count { get; }

    /// <summary>True when rule <paramref name="index"/> allows, false when it denies.</summary>
    public bool Allows(int index) => _allow[index];

    /// <summary>Rule <paramref name="index"/> as written (<c>deny 10.0.0.0/8</c>), UTF-8, without allocating.</summary>
    public ReadOnlySpan<byte> Text(int index) => new(_text + _textStart[index], _textStart[index + 1] - _textStart[index]);

    /// <summary>The network mask of a prefix length over 128 bits.</summary>
    internal static UInt128 MaskOf(int bits) => bits == 0 ? UInt128.Zero : UInt128.MaxValue << (128 - bits);

    /// <summary>
    /// The index of the first rule (in the order given) whose network holds <paramref name="address"/>
    /// (IPv4 as <c>::ffff:a.b.c.d</c>), or -1 when none does.
    /// </summary>
    public int Find(UInt128 address)
    {
        bool mapped = address >> 32 == 0xffff;
        int best = int.MaxValue;
        for (int i = 0; i < _lengthCount; i++)
        {
            ref Length length = ref _lengths[i];
            if (length.Lowest >= best)
            {
                break; // every later length starts at a higher index
            }
            if (mapped && length.Bits < 96)
            {
                continue;
            }
            int found = Probe(address & length.Mask, length.Bits);
            if (found >= 0 && found < best)
            {
                best = found;
            }
        }
        return best == int.MaxValue ? -1 : best;
    }

    /// <summary>
    /// The index of the first uid rule whose range holds <paramref name="uid"/> (a unix-socket client's),
    /// or -1. The uid rules are read in order: they are few (one per user or range of users), unlike networks.
    /// </summary>
    public int FindUid(uint uid)
    {
        for (int i = 0; i < _uidCount; i++)
        {
            if (uid >= _uids[i].Low && uid <= _uids[i].High)
            {
                return _uids[i].Index;
            }
        }
        return -1;
    }

    private int Probe(UInt128 network, int bits)
    {
        for (int slot = Slot(network, bits); ; slot = (slot + 1) & _mask)
        {
            ref Entry e = ref _entries[slot];
            if (e.Index == 0)
            {
                return -1;
            }
            if (e.Bits == bits && e.Network == network)
            {
                return e.Index - 1;
            }
        }
    }

    private void Insert(UInt128 network, int bits, int index)
    {
        for (int slot = Slot(network, bits); ; slot = (slot + 1) & _mask)
        {
            ref Entry e = ref _entries[slot];
            if (e.Index == 0)
            {
                e = new Entry { Network = network, Bits = bits, Index = index + 1 };
                return;
            }
            if (e.Bits == bits && e.Network == network)
            {
                return; // an earlier rule for the same network wins; this one can never be the first match
            }
        }
    }

    private int Slot(UInt128 network, int bits)
    {
        ulong h = ((ulong)network * 0x9E3779B97F4A7C15UL) ^ ((ulong)(network >> 64) * 0xC2B2AE3D27D4EB4FUL) ^ ((ulong)bits << 56) ^ _seed;
        h ^= h >> 33;
        h *= 0xFF51AFD7ED558CCDUL;
        h ^= h >> 33;
        h *= 0xC4CEB9FE1A85EC53UL;
        h ^= h >> 33;
        return (int)(h & (ulong)_mask);
    }

    public void Dispose()
    {
        _memory.Free(_entries);
        _memory.Free(_lengths);
        _memory.Free(_allow);
        _memory.Free(_textStart);
        _memory.Free(_text);
        _memory.Free(_uids);
    }
}
