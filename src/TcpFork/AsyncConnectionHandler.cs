namespace TcpFork;

/// <summary>Handles one connection asynchronously inside its own process (a fresh single-connection process, so async is fine there).</summary>
public delegate Task<int> AsyncConnectionHandler(Connection connection);
