// One Socket.IO connection per open Session page, with the token in its `auth`.
import { io } from './vendor/socket.io.esm.min.js';
import { token } from './api.js';

export function connect() {
  return io({
    // A function, so a reconnect uses the token of the moment.
    auth: (cb) => cb(token() ? { token: token() } : {}),
    reconnectionDelayMax: 2000,
    // WebSocket first: behind a load balancer it needs no sticky sessions; polling if it fails.
    transports: ['websocket', 'polling'],
    tryAllTransports: true,
  });
}

export function isAuthError(err) {
  return /token/i.test(String(err && err.message));
}
