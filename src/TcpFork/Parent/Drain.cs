namespace TcpFork;

/// <summary>Where the parent is in its life: serving, or one of the steps of a stop.</summary>
internal enum StopPhase
{
    /// <summary>Accepting connections.</summary>
    Serving,

    /// <summary>Listeners closed; children finish their connections until the drain timeout or a second stop signal.</summary>
    Draining,

    /// <summary>Each child's process group has SIGTERM; those left at the end of the kill grace get SIGKILL.</summary>
    Terminating,

    /// <summary>SIGKILL sent; waiting for the last children to be reaped.</summary>
    Killing,

    /// <summary>No child left: the loop ends.</summary>
    Done,
}

/// <summary>
/// The stop sequence after SIGTERM or SIGINT, as a state machine with one deadline:
/// <see cref="StopPhase.Draining"/> until <see cref="TcpForkServerOptions.DrainTimeout"/> (or at once on
/// a second stop signal), then <see cref="StopPhase.Terminating"/> until
/// <see cref="TcpForkServerOptions.KillGrace"/>, then <see cref="StopPhase.Killing"/>, and
/// <see cref="StopPhase.Done"/> as soon as no child is left. The loop closes the listeners (it owns
/// them) and calls <see cref="Tick"/> every turn, <see cref="ChildEnded"/> for every reaped child.
/// Connections still waiting for their PROXY header (<paramref name="headers"/>; only after an upgrade's
/// hand-over, a stop serves or closes them at once) keep the drain going like children: each becomes one
/// or is closed within the header timeout.
/// </summary>
internal sealed class Drain(TcpForkServerOptions options, ChildTable children, ServerLog log, ProxyHeaders? headers = null)
{
    /// <summary>A deadline that never comes.</summary>
    public const long NoDeadline = long.MaxValue;

    private bool _secondSignal;
    /// <summary>Draining after an upgrade's hand-over: no deadline until a stop signal.</summary>
    private bool _handedOver;

    public StopPhase Phase { get; private set; }

    /// <summary>When the current phase ends (<see cref="NoDeadline"/> while serving or killing).</summary>
    public long Deadline { get; private set; } = NoDeadline;

    public long Drained { get; private set; }

    public long Terminated { get; private set; }

    public long Killed { get; private set; }

    /// <summary>The first stop signal, once the listeners are closed: the drain begins.</summary>
    public void Begin(int signal, long now)
    {
        Phase = StopPhase.Draining;
        Deadline = now + (long)options.DrainTimeout.TotalMilliseconds;
        log.Draining(signal, children.Count, options.DrainTimeout);
        EndIfEmpty();
    }

    /// <summary>
    /// An upgrade's hand-over (docs/upgrade.md): the children finish their connections, however long they
    /// take (the new parent serves meanwhile); a stop signal then starts the drain timeout.
    /// </summary>
    public void BeginHandOver()
    {
        Phase = StopPhase.Draining;
        _handedOver = true;
        EndIfEmpty();
    }

    /// <summary>A stop signal after the first: a second one ends the drain at once; later ones change nothing and say when SIGKILL comes.</summary>
    public void Again(int signal, long now)
    {
        if (_handedOver && Phase == StopPhase.Draining && Deadline == NoDeadline)
        {
            Begin(signal, now); // the first stop signal since the hand-over: the usual drain
            return;
        }
        switch (Phase)
        {
            case StopPhase.Draining:
                log.StopAgainTerminating(signal, children.Count);
                _secondSignal = true;
                Deadline = now;
                break;
            case StopPhase.Terminating:
                log.StopAgainWhileTerminating(signal, children.Count, Deadline - now);
                break;
            case StopPhase.Killing:
                log.StopAgainAfterKill(signal, children.Count);
                break;
        }
    }

    /// <summary>A child was reaped (the table no longer holds it).</summary>
    public void ChildEnded()
    {
        if (Phase == StopPhase.Draining)
        {
            Drained++;
        }
        EndIfEmpty();
    }

    /// <summary>Moves on when the phase's deadline has passed.</summary>
    public void Tick(long now)
    {
        EndIfEmpty(); // the last waiting PROXY header may have been closed since
        if (now < Deadline)
        {
            return;
        }
        switch (Phase)
        {
            case StopPhase.Draining:
                Terminated = children.SignalAll(Interop.SIGTERM);
                log.Terminating(_secondSignal, (int)Terminated, options.KillGrace);
                Phase = StopPhase.Terminating;
                Deadline = now + (long)options.KillGrace.TotalMilliseconds;
                break;
            case StopPhase.Terminating:
                Killed = children.SignalAll(Interop.SIGKILL);
                Terminated -= Killed;
                log.GracePeriodOver((int)Killed);
                Phase = StopPhase.Killing;
                Deadline = NoDeadline;
                break;
        }
    }

    private void EndIfEmpty()
    {
        if (Phase != StopPhase.Serving && children.Count == 0 && headers is not { Waiting: > 0 })
        {
            Phase = StopPhase.Done;
            Deadline = NoDeadline;
        }
    }
}
