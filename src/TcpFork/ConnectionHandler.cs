namespace TcpFork;

/// <summary>Handles one connection inside its own process; the return value is the process's exit code.</summary>
public delegate int ConnectionHandler(Connection connection);
