namespace TcpFork;

/// <summary>Why a connection was closed for its PROXY header: the reason label of tcpfork_proxy_header_failures_total (docs/metrics.md).</summary>
internal enum ProxyFailure
{
    /// <summary>Not a PROXY header, or a malformed or oversized one.</summary>
    Invalid,
    /// <summary>Not whole within the header timeout.</summary>
    Timeout,
    /// <summary>The peer closed before the header was whole.</summary>
    Eof,
    /// <summary>A peer outside --proxy-from.</summary>
    Untrusted,
    /// <summary>Still waiting when the server stopped.</summary>
    Stopping,
    /// <summary>A system call failed (recv, epoll_ctl).</summary>
    Error,
}

/// <summary>
/// The parent's step between accept and admit when <see cref="TcpForkServerOptions.ProxyProtocol"/> is on:
/// read each connection's PROXY header so that the policies, the log and the child see the real client
/// (docs/proxy-protocol.md). A peer outside <see cref="TcpForkServerOptions.ProxyFrom"/> is closed unread.
/// The header is peeked (MSG_PEEK) and, once whole, exactly its bytes are consumed: the client's data stays
/// in the kernel for the child, in every mode. A header not yet whole waits in a slot of a fixed ring —
/// one more fd on the parent's epoll, with SO_RCVLOWAT set to the bytes the parser still needs, so a
/// partial header wakes the loop once per step, not in a busy loop (reset to 1 before the launch: the
/// child inherits the socket). Every slot has the same timeout, so the ring is a FIFO whose head is the
/// next deadline. Waiting connections count toward <see cref="TcpForkServerOptions.MaxConnections"/>
/// with the children (<see cref="IsFull"/>): each has a child slot reserved. All memory is parent-only
/// and allocated once; nothing here allocates per connection. Its warnings are counted as they repeat
/// (<see cref="Repeat.ProxyHeader"/>): a flood of bad headers writes a line per 10 s, not one per connection.
/// </summary>
internal sealed unsafe class ProxyHeaders
{
    /// <summary>Poller tags of waiting connections have this bit set; the slot index is below it.</summary>
    private const ulong TagBit = Poller.ProxySlotTag;

    private struct Slot
    {
        /// <summary>As accepted: Peer is the proxy until the header is read.</summary>
        public Accepted Connection;
        public long Deadline;

        /// <summary>-1 once the slot is done with (freed lazily, when it reaches the head).</summary>
        public int Fd;

        /// <summary>SO_RCVLOWAT as last set (1: the default).</summary>
        public int LowWater;
    }

    private readonly Slot* _slots;
    private readonly int _capacity;
    private readonly byte* _buffer;
    private readonly ProxyProtocolMode _mode;
    private readonly long _timeoutMs;
    private readonly RuleIndex? _from;
    private readonly Poller _poller;
    private readonly ChildTable _children;
    private readonly ServerLog _log;
    private readonly RepeatedWarnings _repeats;
    private readonly Counters _counters;

    /// <summary>The ring: <see cref="_used"/> slots from <see cref="_head"/>, done ones included; <see cref="_waiting"/> of them live.</summary>
    private int _head, _used, _waiting;

    private ProxyHeaders(TcpForkServerOptions options, Poller poller, ChildTable children, RepeatedWarnings repeats, ServerLog log, ParentMemory memory, Counters counters)
    {
        _counters = counters;
        _capacity = options.MaxConnections;
        _slots = memory.Allocate<Slot>(_capacity);
        _buffer = memory.Allocate<byte>(ProxyHeader.MaxLength);
        _mode = (ProxyProtocolMode)(options.ProxyProtocol - 1);
        _timeoutMs = (long)options.ProxyTimeout.TotalMilliseconds;
        _from = options.ProxyFrom.Count == 0 ? null : new RuleIndex([.. options.ProxyFrom], memory);
        _poller = poller;
        _children = children;
        _log = log;
        _repeats = repeats;
    }

    /// <summary>The reader for <paramref name="options"/>, or null when the PROXY protocol is off.</summary>
    public static ProxyHeaders? Create(TcpForkServerOptions options, Poller poller, ChildTable children, RepeatedWarnings repeats, ServerLog log, ParentMemory memory, Counters counters) =>
        options.ProxyProtocol == ProxyProtocol.Off ? null : new ProxyHeaders(options, poller, children, repeats, log, memory, counters);

    /// <summary>True when no connection may be accepted: children and waiting headers fill the limit, or the ring is full.</summary>
    public bool IsFull => _children.Count + _waiting >= _children.Capacity || _used == _capacity;

    /// <summary>Connections whose header is not yet whole.</summary>
    public int Waiting => _waiting;

    /// <summary>The earliest deadline of a waiting connection, or <see cref="Drain.NoDeadline"/>.</summary>
    public long NextDeadline => _used == 0 ? Drain.NoDeadline : _slots[_head].Deadline;

    /// <summary>True for a poller tag of a waiting connection.</summary>
    public static bool IsTag(ulong tag) => Poller.IsProxySlot(tag);

    /// <summary>
    /// A connection just accepted: true when its header was already whole (<paramref name="c"/> then names
    /// the real client); false when it was closed (logged) or waits for the rest of its header.
    /// </summary>
    public bool Begin(int fd, ref Accepted c, long now)
    {
        if (!Trusted(c.Peer))
        {
            Fail(fd, c.Peer, "not a trusted proxy", ProxyFailure.Untrusted, now);
            return false;
        }
        switch (Read(fd, ref c, hangup: false, out int needed, out string? reason, out ProxyFailure why))
        {
            case ProxyParseStatus.Done:
                return true;
            case ProxyParseStatus.Invalid:
                Fail(fd, c.Peer, reason, why, now);
                return false;
        }
        int i = (_head + _used) % _capacity;
        Slot* s = &_slots[i];
        s->Connection = c;
        s->Fd = fd;
        s->Deadline = now + _timeoutMs;
        s->LowWater = 1;
        if (!_poller.TryWatch(fd, TagBit | (uint)i, on: true, Interop.EPOLLIN | Interop.EPOLLRDHUP))
        {
            Fail(fd, c.Peer, "epoll_ctl failed", ProxyFailure.Error, now);
            return false;
        }
        _used++;
        _waiting++;
        SetLowWater(s, needed);
        return false;
    }

    /// <summary>
    /// A waiting connection is readable (or hung up): true when its header is now whole, with its
    /// descriptor and what the parent knows of it; false when it was closed (logged) or still waits.
    /// </summary>
    public bool Ready(ulong tag, uint events, out int fd, out Accepted c)
    {
        Slot* s = &_slots[(int)(tag & (TagBit - 1))];
        fd = s->Fd;
        c = s->Connection;
        if (fd < 0)
        {
            return false; // done with earlier in this batch of events
        }
        bool hangup = (events & (Interop.EPOLLRDHUP | Interop.EPOLLHUP | Interop.EPOLLERR)) != 0;
        ProxyParseStatus status = Read(fd, ref c, hangup, out int needed, out string? reason, out ProxyFailure why);
        if (status == ProxyParseStatus.NeedMore)
        {
            SetLowWater(s, needed);
            return false;
        }
        Release(s);
        if (status == ProxyParseStatus.Invalid)
        {
            Fail(fd, s->Connection.Peer, reason, why, Environment.TickCount64);
            return false;
        }
        if (s->LowWater > 1)
        {
            int one = 1;
            Interop.SetSockOpt(fd, Interop.SOL_SOCKET, Interop.SO_RCVLOWAT, &one, sizeof(int));
        }
        return true;
    }

    /// <summary>Closes (and logs) every waiting connection whose deadline has passed.</summary>
    public void Expire(long now)
    {
        while (_used > 0 && _slots[_head].Deadline <= now)
        {
            Slot* s = &_slots[_head];
            if (s->Fd >= 0)
            {
                int fd = s->Fd;
                Release(s);
                Fail(fd, s->Connection.Peer, "timed out", ProxyFailure.Timeout, now);
            }
            Trim();
        }
    }

    /// <summary>
    /// At a stop: the next waiting connection whose header is whole now, to be served like the accept
    /// queue; every other one is closed (and logged) on the way. False when none is left.
    /// </summary>
    public bool NextAtStop(out int fd, out Accepted c)
    {
        while (_used > 0)
        {
            Slot* s = &_slots[_head]; // live: done slots never stay at the head
            if (Ready(TagBit | (uint)_head, 0, out fd, out c))
            {
                return true;
            }
            if (s->Fd >= 0)
            {
                int closing = s->Fd;
                Release(s);
                Fail(closing, s->Connection.Peer, "server stopping", ProxyFailure.Stopping, Environment.TickCount64);
            }
        }
        fd = -1;
        c = default;
        return false;
    }

    private bool Trusted(in SockAddr peer)
    {
        if (_from is null)
        {
            return true;
        }
        int first = peer.IsUnix ? _from.FindUid(peer.Uid)
            : PeerTable.TryAddress(peer, out UInt128 address) ? _from.Find(address) : -1;
        return first >= 0 && _from.Allows(first);
    }

    /// <summary>Peeks at what has arrived and parses it; on Done consumes exactly the header and puts its addresses into <paramref name="c"/>.</summary>
    private ProxyParseStatus Read(int fd, ref Accepted c, bool hangup, out int needed, out string? reason, out ProxyFailure why)
    {
        needed = 1;
        reason = null;
        why = ProxyFailure.Invalid;
        nint n = Interop.Recv(fd, _buffer, ProxyHeader.MaxLength, Interop.MSG_PEEK | Interop.MSG_DONTWAIT);
        if (n < 0 && Interop.LastError == Errno.EAGAIN && !hangup)
        {
            return ProxyParseStatus.NeedMore;
        }
        if (n <= 0)
        {
            bool closed = n == 0 || Interop.LastError == Errno.EAGAIN;
            reason = closed ? "closed before the header" : "receive failed";
            why = closed ? ProxyFailure.Eof : ProxyFailure.Error;
            return ProxyParseStatus.Invalid;
        }
        ProxyParseStatus status = ProxyHeader.Parse(new ReadOnlySpan<byte>(_buffer, (int)n), _mode, out ProxyHeader header, out needed, out reason);
        if (status == ProxyParseStatus.NeedMore && hangup)
        {
            reason = "closed in the middle of the header";
            why = ProxyFailure.Eof;
            return ProxyParseStatus.Invalid;
        }
        if (status != ProxyParseStatus.Done)
        {
            return status;
        }
        if (Interop.Recv(fd, _buffer, (nuint)header.Length, Interop.MSG_DONTWAIT) != header.Length)
        {
            reason = "receive failed";
            why = ProxyFailure.Error;
            return ProxyParseStatus.Invalid;
        }
        // A unix-socket client behind the proxy has neither an IP nor a uid to judge: it is judged as the proxy.
        if (header.HasAddresses && header.Family != ProxyFamily.Unix)
        {
            _log.Proxied(header.Source, c.Peer);
            c.Peer = header.Source;
            c.Local = header.Destination;
            c.Proxied = true;
        }
        return status;
    }

    private void SetLowWater(Slot* s, int needed)
    {
        if (needed > 1 && needed != s->LowWater)
        {
            Interop.SetSockOpt(s->Fd, Interop.SOL_SOCKET, Interop.SO_RCVLOWAT, &needed, sizeof(int));
            s->LowWater = needed;
        }
    }

    /// <summary>Takes a slot's connection off epoll (before its descriptor is closed or handed on: a child's copy would keep it registered) and marks the slot done.</summary>
    private void Release(Slot* s)
    {
        _poller.TryWatch(s->Fd, 0, on: false, 0);
        s->Fd = -1;
        _waiting--;
        Trim();
    }

    /// <summary>Frees the done slots at the head of the ring.</summary>
    private void Trim()
    {
        while (_used > 0 && _slots[_head].Fd < 0)
        {
            _head = (_head + 1) % _capacity;
            _used--;
        }
    }

    /// <summary>Closes a connection that brought no usable header: counted in the metrics by <paramref name="why"/>; its warning is written when it is the first of a run (RepeatedWarnings).</summary>
    private void Fail(int fd, in SockAddr proxy, string? reason, ProxyFailure why, long now)
    {
        Interop.Close(fd);
        _counters.ProxyHeaderFailed(why);
        reason ??= "invalid";
        if (_repeats.First(Repeat.ProxyHeader, 0, now, reason))
        {
            _log.ProxyHeaderFailed(proxy, reason);
        }
    }
}
