namespace TcpFork;

/// <summary>Why the parent refused a connection.</summary>
internal enum Verdict
{
    Allow,
    DenyRule,
    DenyPerIp,
    DenyRate,
    DenyVerify,
    DenyTableFull,
}

/// <summary>
/// The checks the parent makes before it creates a child: allow/deny rules (first match wins, default
/// allow; looked up in a <see cref="RuleIndex"/> built once per load, whatever their number), connections per IP, connection rate per IP. A refused connection is logged and closed; the
/// service itself is never disabled. Allocation-free per connection, and bounded work: one
/// <see cref="PeerTable"/> lookup per accept (a bucket of 16 slots), one per start and one per end.
/// Rules see the client's whole address; <c>--max-per-ip</c> and <c>--rate</c> count an IPv6 client under its
/// <see cref="TcpForkServerOptions.Ipv6Prefix"/>-bit prefix. A unix-socket client is judged by its uid
/// (SO_PEERCRED, read at accept): only uid rules apply to it, and it is counted per uid
/// (<see cref="PeerTable.UidKey"/>).
/// </summary>
internal sealed class AccessPolicy
{
    private RuleIndex _index;
    private int _lastRule = -1;
    private readonly ParentMemory _memory;
    private readonly int _maxPerIp;
    private readonly PeerTable _peers;

    public AccessPolicy(TcpForkServerOptions options, IReadOnlyList<AccessRule> rules, ParentMemory memory)
    {
        _memory = memory;
        _index = new RuleIndex(rules, memory);
        _maxPerIp = options.MaxPerIp;
        _peers = new PeerTable(options.MaxConnections, options.Rate, memory, options.Ipv6Prefix);
        Message = options.MaxPerIpMessage is null ? null : System.Text.Encoding.UTF8.GetBytes(options.MaxPerIpMessage + "\r\n");
    }

    /// <summary>What a client over the per-IP limit is sent before it is closed, if anything.</summary>
    public byte[]? Message { get; }

    /// <summary>The rule that decided the last <see cref="Verdict.DenyRule"/> (made from its text when read: allocates).</summary>
    public AccessRule? LastRule => _lastRule < 0 ? null : AccessRule.ParseLine(System.Text.Encoding.UTF8.GetString(LastRuleText));

    /// <summary>The text of the rule that decided the last <see cref="Verdict.DenyRule"/>, UTF-8, without allocating (for the log).</summary>
    public ReadOnlySpan<byte> LastRuleText => _lastRule < 0 ? default : _index.Text(_lastRule);

    /// <summary>Puts <paramref name="rules"/> in force (a reload): their index is built here, once, not per connection.</summary>
    public void ReplaceRules(IReadOnlyList<AccessRule> rules)
    {
        var index = new RuleIndex(rules, _memory);
        _index.Dispose();
        _index = index;
        _lastRule = -1;
    }

    /// <summary>SIGHUP: the rules read again; on any failure the rules in force stay (nothing a file holds may stop the parent).</summary>
    public void Reload(Func<IReadOnlyList<AccessRule>> read, ServerLog log)
    {
        try
        {
            IReadOnlyList<AccessRule> rules = read();
            ReplaceRules(rules);
            log.RulesReloaded(rules.Count);
        }
#pragma warning disable CA1031 // Any failure keeps the rules in force.
        catch (Exception e)
#pragma warning restore CA1031
        {
            log.RulesKept(e);
        }
        // The reload's garbage would otherwise stay resident, and every fork copies the parent's pages.
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
    }

    /// <summary>The per-IP table (its counters go into the stats line).</summary>
    internal PeerTable Peers => _peers;

    /// <summary>Decides on a new connection from <paramref name="peer"/>; on Allow also returns how many it has open, this one included.</summary>
    public Verdict Admit(in SockAddr peer, long nowMs, out int fromSameIp)
    {
        fromSameIp = 1;
        int first;
        UInt128 key;
        if (peer.IsUnix)
        {
            first = _index.FindUid(peer.Uid);
            key = PeerTable.UidKey(peer.Uid);
        }
        else if (PeerTable.TryAddress(peer, out UInt128 address))
        {
            first = _index.Find(address);
            key = _peers.AccountKey(address);
        }
        else
        {
            return Verdict.Allow; // no other family is ever accepted
        }
        if (first >= 0 && !_index.Allows(first))
        {
            _lastRule = first;
            return Verdict.DenyRule;
        }
        int slot = _peers.Slot(key, nowMs);
        if (slot < 0)
        {
            return Verdict.DenyTableFull;
        }
        int open = _peers.ConnectionsAt(slot);
        if (_maxPerIp > 0 && open >= _maxPerIp)
        {
            return Verdict.DenyPerIp;
        }
        if (!_peers.TryTakeTokenAt(slot))
        {
            return Verdict.DenyRate;
        }
        fromSameIp = open + 1;
        return Verdict.Allow;
    }

    public void Started(in SockAddr peer, long nowMs)
    {
        if (TryKey(peer, out UInt128 key))
        {
            _peers.AddConnection(key, nowMs);
        }
    }

    public void Ended(in SockAddr peer)
    {
        if (TryKey(peer, out UInt128 key))
        {
            _peers.RemoveConnection(key);
        }
    }

    /// <summary>What <c>--max-per-ip</c> and <c>--rate</c> count the peer under: its IP (IPv6: its prefix) or, on a unix socket, its uid.</summary>
    private bool TryKey(in SockAddr peer, out UInt128 key)
    {
        if (peer.IsUnix)
        {
            key = PeerTable.UidKey(peer.Uid);
            return true;
        }
        bool ip = PeerTable.TryAddress(peer, out UInt128 address);
        key = _peers.AccountKey(address);
        return ip;
    }
}
