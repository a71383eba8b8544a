namespace TcpFork;

/// <summary>
/// The listeners' side of the parent: which of them epoll watches (none while the child table is full,
/// while backing off after a failure, or once stopped: clients then wait in the kernel's backlog, and
/// no listener is polled in vain), accepting one connection, and what an accept error means.
/// </summary>
internal sealed unsafe class Acceptor(Listener[] listeners, Poller poller, RepeatedWarnings repeats, ServerLog log, TimeSpan backoff, Counters counters) : IDisposable
{
    /// <summary>True while the listeners are in the epoll set.</summary>
    public bool Polling { get; private set; }

    /// <summary>After an accept or launch failure, when to accept again.</summary>
    public long ResumeAt { get; private set; }

    public int Count => listeners.Length;

    /// <summary>Adds or removes the listeners from epoll.</summary>
    public void SetPolling(bool on)
    {
        if (on != Polling)
        {
            for (int i = 0; i < listeners.Length; i++)
            {
                poller.Watch(listeners[i].Fd.Fd, (ulong)i, on);
            }
            Polling = on;
        }
    }

    /// <summary>Stops accepting for the back-off time (EMFILE, or fork failing with EAGAIN).</summary>
    public void BackOff(long now)
    {
        counters.BackedOff();
        ResumeAt = now + (long)backoff.TotalMilliseconds;
        SetPolling(false);
    }

    /// <summary>
    /// Accepts one connection from listener <paramref name="index"/>; false when none was waiting or accept
    /// failed (logged, and backing off where waiting helps). A unix client's uid is read here: it has no
    /// IP, and the policies judge it by its uid.
    /// </summary>
    public bool TryAccept(int index, out int fd, out SockAddr peer)
    {
        peer = default;
        int len = SockAddr.Capacity;
        fixed (SockAddr* p = &peer)
        {
            fd = Interop.Accept4(listeners[index].Fd.Fd, p, &len, Interop.SOCK_CLOEXEC);
        }
        if (fd < 0)
        {
            OnError(Interop.LastError);
            return false;
        }
        peer.Length = len;
        if (peer.IsUnix)
        {
            peer.Uid = Interop.PeerUid(fd);
        }
        repeats.Cleared(Repeat.AcceptPaused, Environment.TickCount64);
        return true;
    }

    private void OnError(Errno error)
    {
        long now = Environment.TickCount64;
        if (error == Errno.EAGAIN)
        {
            return;
        }
        counters.AcceptFailed();
        switch (error)
        {
            case Errno.EMFILE or Errno.ENFILE or Errno.ENOBUFS or Errno.ENOMEM:
                if (repeats.First(Repeat.AcceptPaused, error, now))
                {
                    log.AcceptPaused(error, backoff);
                }
                BackOff(now);
                return;
            default:
                // ECONNABORTED, EPROTO, network errors: that connection is gone; the next is fine.
                if (log.IsNormal && repeats.First(Repeat.AcceptFailed, error, now))
                {
                    log.AcceptFailed(error);
                }
                return;
        }
    }

    /// <summary>
    /// At a stop, before the queue of listener <paramref name="index"/> is served: a TCP listener gets a
    /// filter that drops new SYNs (their clients retry and then find the port closed: refused, not reset),
    /// so its queue stops growing and serving it ends under any load; returns how many connections to
    /// take at most (a unix listener, which takes no filter, gives at most one backlog's worth more).
    /// A socket passed by the service manager gets no filter either: it outlives this process, and the
    /// next instance must find it accepting.
    /// </summary>
    public int CloseTheDoor(int index, int backlog) =>
        !listeners[index].Address.IsUnix && !listeners[index].Inherited && Interop.DropIncomingSyns(listeners[index].Fd.Fd) ? int.MaxValue : backlog;

    /// <summary>Closes the listeners (a unix socket's file is removed, if still this process's).</summary>
    public void Dispose()
    {
        SetPolling(false);
        foreach (Listener l in listeners)
        {
            l.Dispose();
        }
    }
}
