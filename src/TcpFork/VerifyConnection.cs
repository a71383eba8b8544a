namespace TcpFork;

/// <summary>
/// Decides, in the parent, whether a new connection gets a child (true) or is closed and logged
/// <c>deny … verify</c> (false). It runs on the parent's one thread before every fork, so it must keep
/// docs/fork-safety.md's invariants: no threads or tasks, no allocation. The API helps: the client is a
/// <c>ref struct</c> (it cannot be stored, captured into a lambda that outlives the call, or passed to
/// another thread), the hook is synchronous, and the parent measures each call and warns once on
/// stderr if a hook allocated. A hook that throws refuses that connection (<c>deny … verify</c>) and is
/// logged once per exception type; the parent serves on.
/// </summary>
public delegate bool VerifyConnection(ClientAddress client);
