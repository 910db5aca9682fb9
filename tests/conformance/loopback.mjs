// Preloaded into the cache-tests origin server (node --import): every listen() that
// names only a port is bound to 127.0.0.1 instead of all interfaces.
import net from 'net'

const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  const port = args[0]
  const portOnly = typeof port === 'number' || (typeof port === 'string' && /^[0-9]+$/.test(port))
  if (portOnly && typeof args[1] !== 'string') {
    args.splice(1, 0, '127.0.0.1')
  } else if (port !== null && typeof port === 'object' && port.path === undefined && !port.host) {
    args[0] = { ...port, host: '127.0.0.1' }
  }
  return listen.apply(this, args)
}
