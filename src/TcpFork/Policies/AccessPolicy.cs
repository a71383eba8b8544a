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
/// allow), connections per IP, connection rate per IP. A refused connection is logged and closed; the
/// service itself is never disabled. Allocation-free per connection, and bounded work: one
/// <see cref="PeerTable"/> lookup per accept (a bucket of 16 slots), one per start and one per end.
/// Rules see the client's whole address; <c>--max-per-ip</c> and <c>--rate</c> count an IPv6 client under its
/// <see cref="TcpForkServerOptions.Ipv6Prefix"/>-bit prefix.
/// </summary>
internal sealed class AccessPolicy
{
    private AccessRule[] _rules;
    private readonly int _maxPerIp;
    private readonly PeerTable _peers;

    public AccessPolicy(TcpForkServerOptions options, IReadOnlyList<AccessRule> rules, ParentMemory memory)
    {
        _rules = [.. rules];
        _maxPerIp = options.MaxPerIp;
        _peers = new PeerTable(options.MaxConnections, options.Rate, memory, options.Ipv6Prefix);
        Message = options.MaxPerIpMessage is null ? null : System.Text.Encoding.UTF8.GetBytes(options.MaxPerIpMessage + "\r\n");
    }

    /// <summary>What a client over the per-IP limit is sent before it is closed, if anything.</summary>
    public byte[]? Message { get; }

    /// <summary>The rule that decided the last <see cref="Verdict.DenyRule"/>.</summary>
    public AccessRule? LastRule { get; private set; }

    public void ReplaceRules(IReadOnlyList<AccessRule> rules) => _rules = [.. rules];

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
        if (!PeerTable.TryAddress(peer, out UInt128 address))
        {
            return Verdict.Allow; // unix sockets have no IP
        }
        Span<byte> bytes = stackalloc byte[16];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt128BigEndian(bytes, address);
        foreach (AccessRule rule in _rules)
        {
            if (rule.Matches(bytes))
            {
                if (!rule.Allow)
                {
                    LastRule = rule;
                    return Verdict.DenyRule;
                }
                break;
            }
        }
        int slot = _peers.Slot(_peers.AccountKey(address), nowMs);
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
        if (PeerTable.TryAddress(peer, out UInt128 address))
        {
            _peers.AddConnection(_peers.AccountKey(address), nowMs);
        }
    }

    public void Ended(in SockAddr peer)
    {
        if (PeerTable.TryAddress(peer, out UInt128 address))
        {
            _peers.RemoveConnection(_peers.AccountKey(address));
        }
    }
}
