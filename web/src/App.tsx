import { CharactersPage } from "./components/Characters";
import { LobbyPage } from "./components/Lobby";
import { ReplayPage } from "./components/Replay";
import { RoomPage } from "./components/Room";
import { navigate, useRoute } from "./lib/router";

export function App() {
  const route = useRoute();
  switch (route.page) {
    case "lobby":
      return <LobbyPage />;
    case "characters":
      return <CharactersPage />;
    case "room":
      // A new key per room: nothing of one room's state leaks into the next.
      return <RoomPage key={route.roomId} roomId={route.roomId} token={route.token} />;
    case "replay":
      return <ReplayPage key={route.roomId} roomId={route.roomId} token={route.token} />;
    case "notFound":
      return (
        <main className="page narrow">
          <h1>Nothing here</h1>
          <p>
            <a href="/" onClick={(e) => (e.preventDefault(), navigate("/"))}>
              Back to the rooms
            </a>
          </p>
        </main>
      );
  }
}
