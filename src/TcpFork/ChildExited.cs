namespace TcpFork;

/// <summary>Observes, in the parent, a child that has ended; same rules as <see cref="VerifyConnection"/>. An exception it throws is logged once per type and the parent serves on.</summary>
public delegate void ChildExited(in ChildExit exit);
