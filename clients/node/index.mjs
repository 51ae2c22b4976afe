// ESM entry: the same classes as the CommonJS one.
import cjs from './index.cjs';

export const {
  Warden, Lease, Group, Election, ENDPOINTS, ERROR_CLASSES,
  WardenError, InvalidRequestError, UnauthorizedError, ForbiddenError, NotFoundError, RequestTimeoutError,
  LockTimeoutError, NotOwnerError, LeaseLostError, RenewalCappedError, TooManyWaitersError, RateLimitedError,
  BackendUnavailableError, ShuttingDownError, InternalError, UnreachableError, ConflictError,
  ConditionFailedError,
} = cjs;
export default cjs;
